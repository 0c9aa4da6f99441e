"""Typed columns: a JSON Schema -> an Arrow schema, and extracted values -> Arrow rows.

Everything is derived from the JSON Schema (like the grammar), so a Pydantic
model and a ``.schema.json`` file give the same columns. Values are first put in
their JSON form (`model_dump(mode="json")`) and then coerced per Arrow type, so
both kinds of output travel one road.

Mapping: string -> string; ``format`` date / date-time / time -> date32 /
timestamp[us] / time64[us]; integer -> int64; number -> float64, or decimal128
when the schema bounds its digits (``x-decimal``); boolean -> bool; enum/const ->
the values' type; array -> list; object -> struct; ``X | None`` -> nullable X; a
union of objects -> one struct with every alternative's fields; any other union ->
its JSON text as a string.

Date-times with an offset are stored in UTC; naive ones as written (one Arrow
column cannot hold both, and Parquet has no per-value zone).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

from ._errors import SchemaError
from ._schema import OutputSchema, resolve
from ._surface import Bounds

ID, ERROR, MS = "_id", "_error", "_ms"   # the job's own columns; schema fields may not use them


def arrow_type(s: dict[str, Any], root: dict[str, Any], bounds: Bounds = Bounds()) -> Any:
    """The Arrow type of values of JSON Schema `s` (nullability is Arrow's default)."""
    import pyarrow as pa

    s = resolve(s, root)
    alts = [a for key in ("anyOf", "oneOf") for a in s.get(key, [])]
    if isinstance(s.get("type"), list):
        alts = [{**s, "type": t} for t in s["type"]]
    if alts:
        return _union([a for a in alts if resolve(a, root).get("type") != "null"], root, bounds)
    if "const" in s or "enum" in s:
        return _literal_type(s.get("enum", [s.get("const")]))
    kind = s.get("type")
    if kind == "object":
        fields = [pa.field(name, arrow_type(sub, root, bounds))
                  for name, sub in s.get("properties", {}).items()]
        return pa.struct(fields)
    if kind == "array":
        return pa.list_(arrow_type(s.get("items", {}), root, bounds))
    if kind == "string":
        return {"date": pa.date32(), "date-time": pa.timestamp("us"),
                "time": pa.time64("us")}.get(s.get("format"), pa.string())
    if kind == "integer":
        return pa.int64()
    if kind == "number":
        return _number_type(s, bounds)
    if kind == "boolean":
        return pa.bool_()
    if kind == "null":
        return pa.null()
    raise SchemaError(f"no Arrow type for a schema of type {kind!r}", keyword="type")


def _number_type(s: dict[str, Any], bounds: Bounds) -> Any:
    import pyarrow as pa

    dec = s.get("x-decimal")
    if not dec:
        return pa.float64()
    scale = int(dec.get("decimal_places", bounds.frac_digits))
    precision = int(dec.get("max_digits", bounds.int_digits + scale))
    return pa.decimal128(min(max(precision, scale + 1), 38), scale)


def _literal_type(values: list[Any]) -> Any:
    import pyarrow as pa

    for check, typ in ((lambda v: isinstance(v, bool), pa.bool_()),
                       (lambda v: isinstance(v, int) and not isinstance(v, bool), pa.int64()),
                       (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), pa.float64())):
        if all(check(v) for v in values if v is not None):
            return typ
    return pa.string()


def _union(alts: list[dict[str, Any]], root: dict[str, Any], bounds: Bounds) -> Any:
    """One Arrow type for a union: the shared type, a merged struct, or JSON text."""
    import pyarrow as pa

    types = [arrow_type(a, root, bounds) for a in alts]
    if not types:
        return pa.null()
    if all(t == types[0] for t in types):
        return types[0]
    if all(pa.types.is_struct(t) for t in types):
        merged: dict[str, Any] = {}
        for t in types:
            for f in t:
                if merged.setdefault(f.name, f.type) != f.type:
                    return pa.string()  # a key with two types: keep the JSON text
        return pa.struct([pa.field(k, v) for k, v in merged.items()])
    return pa.string()


def output_schema(schema: OutputSchema, id_type: Any | None = None, bounds: Bounds = Bounds()) -> Any:
    """The Arrow schema of an extraction table: [_id], the schema's fields, _error, _ms."""
    import pyarrow as pa

    root = schema.json_schema
    top = arrow_type(root, root, bounds)
    if not pa.types.is_struct(top) or top.num_fields == 0:
        raise SchemaError("typed columns need an object schema with properties", keyword="properties")
    clash = {f.name for f in top} & {ID, ERROR, MS}
    if clash:
        raise SchemaError(f"field name {sorted(clash)[0]!r} is reserved for extractkit's own columns")
    fields = ([pa.field(ID, id_type)] if id_type is not None else []) + list(top)
    return pa.schema(fields + [pa.field(ERROR, pa.string()), pa.field(MS, pa.float64())])


def json_form(value: Any) -> Any:
    """A validated output (model instance or dict) in its JSON form, keys as in the schema."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True)
    return value


def coerce(value: Any, typ: Any) -> Any:
    """A JSON-form value -> the Python value pyarrow expects for `typ`."""
    import pyarrow as pa

    if value is None:
        return None
    if pa.types.is_struct(typ):
        return {f.name: coerce(value.get(f.name), f.type) for f in typ}
    if pa.types.is_list(typ):
        return [coerce(v, typ.value_type) for v in value]
    if pa.types.is_string(typ):
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if pa.types.is_decimal(typ):
        return decimal.Decimal(str(value))
    if pa.types.is_floating(typ):
        return float(value)
    if pa.types.is_date32(typ):
        return dt.date.fromisoformat(value) if isinstance(value, str) else value
    if pa.types.is_timestamp(typ):
        return _naive(dt.datetime.fromisoformat(value) if isinstance(value, str) else value)
    if pa.types.is_time64(typ):
        return dt.time.fromisoformat(value) if isinstance(value, str) else value
    return value


def _naive(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def results_table(results: list[Any], schema: Any) -> Any:
    """An Arrow table of `schema` (from `output_schema`) from extract_many Results."""
    import pyarrow as pa

    fields = [f for f in schema if f.name not in (ID, ERROR, MS)]
    columns: dict[str, list[Any]] = {f.name: [] for f in schema}
    for r in results:
        data = json_form(r.value) if r.error is None else {}
        for f in fields:
            columns[f.name].append(coerce(data.get(f.name), f.type))
        if ID in columns:
            columns[ID].append(r.id)
        columns[ERROR].append(error_text(r.error) if r.error is not None else None)
        columns[MS].append(round(r.seconds * 1000, 3))
    return pa.Table.from_pydict(columns, schema=schema)
