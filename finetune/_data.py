"""Training and evaluation data: JSONL files of ``{"text": ..., "output": {...}}``.

Every line is checked against the schema when it is read. A bad line is a
usage error that names the file, the line number and the reason - a data file
is never silently shortened. The gold `output` is normalized exactly as the
decoder would write it (`canonical_output`), so training targets, evaluation
gold and model outputs all share one surface form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from extractkit._errors import InputError, InvalidOutputError
from extractkit._schema import OutputSchema, as_output_schema
from extractkit._surface import dump_json


class DataError(InputError):
    """A training or evaluation file is malformed (the caller's data, not the model)."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = f"{path}:{line}: " if path is not None and line is not None else ""
        super().__init__(where + message)
        self.path = path
        self.line = line


@dataclass(frozen=True)
class Example:
    """One document and its gold object (JSON-ready, in the decoder's surface form)."""

    text: str
    output: dict[str, Any]
    id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


def canonical_output(output: Any, schema: Any) -> dict[str, Any]:
    """Validate `output` under `schema` and return it as the decoder would write it.

    Raises InvalidOutputError if it does not validate. Dates become ISO strings,
    decimals lose trailing zeros, absent optional keys become null, keys follow
    schema order - whatever `dump_json` does, so `dump_json(canonical)` is the
    exact training target.
    """
    schema = as_output_schema(schema)
    value = schema.validate(output, raw=json.dumps(output, default=str))
    return json.loads(dump_json(value, schema.json_schema))


def target_json(output: dict[str, Any], schema: Any) -> str:
    """The exact text the model is trained to write (and the grammar allows) for `output`."""
    schema = as_output_schema(schema)
    value = schema.validate(output, raw=json.dumps(output, default=str))
    return dump_json(value, schema.json_schema)


def read_examples(path: str | Path, schema: Any, *, gold_key: str = "output") -> list[Example]:
    """Read a JSONL data file; every line must be an object with `text` and `output`."""
    schema = as_output_schema(schema)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    examples: list[Example] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            examples.append(_parse_line(line, number, str(path), schema, gold_key))
    if not examples:
        raise DataError(f"{path} holds no examples")
    return examples


def _parse_line(line: str, number: int, path: str, schema: OutputSchema, gold_key: str) -> Example:
    def bad(reason: str) -> DataError:
        return DataError(reason, path=path, line=number)

    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise bad(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise bad(f"expected a JSON object, got {type(row).__name__}")
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        raise bad('"text" must be a non-empty string')
    if gold_key not in row:
        raise bad(f'missing "{gold_key}" (the gold object)')
    try:
        output = canonical_output(row[gold_key], schema)
    except InvalidOutputError as exc:
        raise bad(f'"{gold_key}" does not match schema {schema.name}: {exc}') from None
    meta = {k: v for k, v in row.items() if k not in ("text", gold_key, "id")}
    return Example(text=text, output=output, id=str(row["id"]) if "id" in row else None, meta=meta)


def write_examples(path: str | Path, examples: Iterable[Example]) -> int:
    """Write examples as JSONL (the format `read_examples` reads); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for ex in examples:
            row: dict[str, Any] = {"id": ex.id} if ex.id is not None else {}
            row.update({"text": ex.text, "output": ex.output, **ex.meta})
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count
