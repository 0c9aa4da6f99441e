"""Stage 5 - parse: raw model text -> JSON -> the caller's object.

Every failure here is the model's fault and raises an `OutputError` that
carries the raw text. A bare JSONDecodeError never escapes.
"""

from __future__ import annotations

import json
from typing import Any

from ._errors import InvalidOutputError, TruncatedOutputError
from ._schema import OutputSchema, allows_null, resolve


def _drop_absent(value: Any, s: dict[str, Any], root: dict[str, Any]) -> Any:
    """Remove null optional keys whose schema does not allow null.

    The surface form always writes every key and spells "not given" as null;
    for an optional field that cannot hold null (a default of "" or 0, say),
    null means "absent", so the field's default applies.
    """
    s = resolve(s, root)
    if isinstance(value, dict):
        props = s.get("properties")
        if props is None:
            alts = [a for k in ("anyOf", "oneOf") for a in s.get(k, [])]
            for alt in alts:
                value = _drop_absent(value, alt, root)
            return value
        required = set(s.get("required", []))
        return {k: _drop_absent(v, props.get(k, {}), root) for k, v in value.items()
                if not (v is None and k not in required and not allows_null(props.get(k, {}), root))}
    if isinstance(value, list) and isinstance(s.get("items"), dict):
        return [_drop_absent(v, s["items"], root) for v in value]
    return value


def parse_output(raw: str, finished: bool, schema: OutputSchema) -> Any:
    """Turn one generation into the validated object, or raise an OutputError."""
    if not finished:
        raise TruncatedOutputError("generation stopped at max_new_tokens before the object was complete",
                                   raw=raw)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidOutputError(f"output is not valid JSON ({exc.msg} at char {exc.pos})", raw=raw) from None
    data = _drop_absent(data, schema.json_schema, schema.json_schema)
    return schema.validate(data, raw)
