"""Stage 1 - schema: what the caller wants back, as one JSON Schema.

Everything downstream (prompt, grammar, parsing) reads the JSON Schema, never
Python types, so a Pydantic model and a plain ``*.schema.json`` file travel the
same road. The only Python-specific part is how a result is validated at the
end: Pydantic models validate into instances, JSON Schema files into dicts
checked by `jsonschema`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import GenerateJsonSchema

from ._errors import InvalidOutputError, SchemaError, UnknownSchemaError

BUILTIN_SCHEMAS = {
    "invoice": "extractkit.schemas:Invoice",
    "receipt": "extractkit.schemas:Receipt",
    "contact": "extractkit.schemas:Contact",
    "event": "extractkit.schemas:Event",
    "job_posting": "extractkit.schemas:JobPosting",
}


def lookup_ref(root: dict[str, Any], ref: str) -> dict[str, Any] | None:
    """The schema a local `$ref` (``#/$defs/Name``) points to, or None."""
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def resolve(s: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref` (and single-schema `allOf`) chains, keeping sibling keywords.

    Unresolvable references resolve to {} here; `_surface` reports them as
    SchemaErrors when the grammar is built, which always happens first.
    """
    while "$ref" in s or ("allOf" in s and len(s["allOf"]) == 1):
        key = "$ref" if "$ref" in s else "allOf"
        target = (lookup_ref(root, s["$ref"]) or {}) if key == "$ref" else s["allOf"][0]
        s = {**target, **{k: v for k, v in s.items() if k != key}}
    return s


def allows_null(s: dict[str, Any], root: dict[str, Any]) -> bool:
    """Whether a value of schema `s` may be JSON null."""
    s = resolve(s, root)
    kind = s.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(allows_null(alt, root) for key in ("anyOf", "oneOf") for alt in s.get(key, []))


class _ExtractJsonSchema(GenerateJsonSchema):
    """Pydantic's generator, except that `Decimal` is a JSON number.

    Pydantic describes Decimal as ``number | string`` and drops `max_digits` and
    `decimal_places`; we want the model to write a plain number and the grammar
    to bound its digits, so we keep those constraints under an ``x-decimal`` key.
    """

    def decimal_schema(self, schema):  # type: ignore[override]
        out: dict[str, Any] = {"type": "number"}
        for ours, theirs in (("minimum", "ge"), ("maximum", "le"),
                             ("exclusiveMinimum", "gt"), ("exclusiveMaximum", "lt")):
            if schema.get(theirs) is not None:
                out[ours] = float(schema[theirs])
        digits = {k: schema[k] for k in ("max_digits", "decimal_places") if schema.get(k) is not None}
        if digits:
            out["x-decimal"] = digits
        return out


@dataclass(frozen=True)
class OutputSchema:
    """The requested output: a JSON Schema plus how to validate into an object."""

    name: str
    json_schema: dict[str, Any] = field(repr=False)
    model: type[BaseModel] | None = field(default=None, repr=False)

    @property
    def digest(self) -> str:
        """A stable hash of the JSON Schema, used as a cache key and in manifests."""
        blob = json.dumps(self.json_schema, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def validate(self, data: Any, raw: str) -> Any:
        """Turn parsed JSON into the caller's object, or raise InvalidOutputError."""
        if self.model is not None:
            try:
                return self.model.model_validate(data)
            except ValidationError as exc:
                raise InvalidOutputError(
                    f"output does not validate as {self.name}: {_first_error(exc)}",
                    raw=raw, errors=exc.errors(include_url=False),
                ) from None
        import jsonschema  # only JSON-Schema-file users pay for this import

        errors = sorted(jsonschema.Draft202012Validator(self.json_schema).iter_errors(data),
                        key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.absolute_path) or "<root>"
            raise InvalidOutputError(f"output does not validate as {self.name}: {where}: {first.message}",
                                     raw=raw, errors=[e.message for e in errors])
        return data


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"]) or "<root>"
    return f"{loc}: {err['msg']}"


def as_output_schema(spec: Any) -> OutputSchema:
    """Accept a Pydantic model class, a JSON Schema dict, or an OutputSchema."""
    if isinstance(spec, OutputSchema):
        return spec
    if isinstance(spec, type) and issubclass(spec, BaseModel):
        try:
            js = spec.model_json_schema(schema_generator=_ExtractJsonSchema)
        except Exception as exc:  # pydantic's own "cannot generate schema" errors
            raise SchemaError(f"cannot build a JSON Schema for {spec.__name__}: {exc}") from None
        return OutputSchema(name=spec.__name__, json_schema=js, model=spec)
    if isinstance(spec, dict):
        if spec.get("type") != "object" and "$ref" not in spec:
            raise SchemaError("a JSON Schema for extraction must describe an object (type: object)",
                              keyword="type")
        return OutputSchema(name=str(spec.get("title", "object")), json_schema=spec)
    raise SchemaError(f"expected a Pydantic model class or a JSON Schema dict, got {type(spec).__name__}")


def load_schema(ref: str) -> OutputSchema:
    """Resolve a CLI-style schema reference: built-in name, ``module:Class`` or file."""
    if ref in BUILTIN_SCHEMAS:
        ref = BUILTIN_SCHEMAS[ref]
    path = Path(ref)
    if ref.endswith(".json"):
        if not path.is_file():
            raise UnknownSchemaError(f"schema file not found: {ref}")
        try:
            return as_output_schema(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise UnknownSchemaError(f"schema file {ref} is not valid JSON: {exc}") from None
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownSchemaError(f"cannot import schema {ref!r}: {exc}") from None
        return as_output_schema(obj)
    known = ", ".join(sorted(BUILTIN_SCHEMAS))
    raise UnknownSchemaError(
        f"unknown schema {ref!r}: use a built-in name ({known}), module:Class, or a .json file")
