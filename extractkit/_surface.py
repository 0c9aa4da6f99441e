"""Stage 3a - the JSON surface form: one fixed, compact spelling of every object.

This module is the single source of truth for *how* an object is written as
text, and it says it twice, in two forms that must agree:

* `build_surface(schema)` - a regular expression over characters that matches
  exactly the allowed spellings (keys in schema order, no whitespace, every
  string, number and array bounded). The constraint stage compiles it against
  the tokenizer; bounds guarantee that constrained decoding always ends.
* `dump_json(value, schema)` - writes a value in that very spelling. Fine-tuning
  uses it for its targets, so the model is trained on what the grammar allows.

Why a regex of our own rather than each engine's JSON Schema compiler: the three
engines disagree on whitespace, separators, extra keys and numeric bounds (see
docs/backends.md); one regex gives all three the same language.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ._errors import SchemaError
from ._schema import allows_null, lookup_ref, resolve


@dataclass(frozen=True)
class Bounds:
    """Defaults for what the schema leaves unbounded (documented in docs/schemas.md)."""

    max_string: int = 200       # characters in a string without maxLength
    max_items: int = 16         # elements in an array without maxItems
    int_digits: int = 12        # digits of an integer without minimum/maximum
    frac_digits: int = 6        # digits after the point of a number


_ANNOTATIONS = {"title", "description", "default", "examples", "$comment", "deprecated",
                "readOnly", "writeOnly", "discriminator", "x-decimal", "$schema", "$id", "$defs",
                "definitions"}
_HANDLED = {"type", "properties", "required", "additionalProperties", "items", "minItems",
            "maxItems", "minLength", "maxLength", "pattern", "format", "enum", "const", "anyOf",
            "oneOf", "allOf", "$ref", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}

_STR_CHAR = r'([^"\\\x00-\x1f]|\\["\\/bfnrt])'
_D = "[0-9]"
_DATE = rf"{_D}{{4}}-(0[1-9]|1[0-2])-(0[1-9]|[12]{_D}|3[01])"
_TIME = rf"([01]{_D}|2[0-3]):[0-5]{_D}:[0-5]{_D}"
_FORMATS = {
    "date": (_DATE, "ISO date YYYY-MM-DD"),
    "date-time": (rf"{_DATE}T{_TIME}(Z|[+-]([01]{_D}|2[0-3]):[0-5]{_D})?",
                  "ISO date-time YYYY-MM-DDTHH:MM:SS[offset]"),
    "time": (_TIME, "ISO time HH:MM:SS"),
    "email": (r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(\.[A-Za-z0-9\-]{1,63}){1,4}", "e-mail shape"),
    "uuid": (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID shape"),
}


_JSON_UNSAFE = r'"\\\x00-\x1f'  # characters a JSON string cannot hold unescaped


def _json_safe_pattern(pattern: str, cap: int) -> str:
    """Make a user `pattern` safe inside a JSON string, and bounded.

    A pattern is written for the *value*, but the grammar matches the JSON
    *text*: `[^@]` or `.` would let the model write a closing quote and escape
    the string. So negated classes and `.` also exclude quote, backslash and
    control characters, and `\\s` becomes a plain space. Unbounded repeats
    (`*`, `+`, `{n,}`) are capped at `cap` so decoding always ends.
    """
    body = pattern[1:] if pattern.startswith("^") else pattern
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    out, i, in_class, negated = [], 0, False, False
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            pair = body[i: i + 2]
            if not in_class and pair == "\\s":
                pair = " "
            elif not in_class and pair == "\\S":
                pair = f"[^\\s{_JSON_UNSAFE}]"
            out.append(pair)
            i += 2
            continue
        if in_class:
            if ch == "]" and out[-1] not in ("[", "[^"):
                in_class = False
                out.append(f"{_JSON_UNSAFE}]" if negated else "]")
            else:
                out.append(ch)
        elif ch == "[":
            in_class, negated = True, body[i + 1: i + 2] == "^"
            out.append("[^" if negated else "[")
            i += 2 if negated else 1
            continue
        elif ch == ".":
            out.append(f"[^{_JSON_UNSAFE}]")
        elif ch in "*+":
            out.append("{%d,%d}" % (0 if ch == "*" else 1, cap))
            if body[i + 1: i + 2] == "?":
                i += 1  # lazy and greedy match the same whole strings
        elif ch == "{" and "}" in body[i:]:
            close = body.index("}", i)
            lo, comma, hi = body[i + 1: close].partition(",")
            out.append("{%s,%d}" % (lo, cap) if comma and not hi else body[i: close + 1])
            i = close
        elif ch == "{":
            out.append("\\{")  # an unclosed brace is a literal; Python reads it so, Rust engines refuse it bare
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _lit(text: str) -> str:
    """Escape a literal for the regex dialect shared by the three engines."""
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", text)


@dataclass
class FieldReport:
    """What happens to one field: enforced while decoding, or checked afterwards."""

    path: str
    type: str
    enforced: list[str] = field(default_factory=list)
    validated: list[str] = field(default_factory=list)


@dataclass
class Surface:
    """The compiled surface form of one schema."""

    regex: str
    fields: list[FieldReport]
    unsupported: list[SchemaError]

    @property
    def max_chars(self) -> int:
        """The length of the longest text the regex matches (all repeats are bounded)."""
        try:
            from re import _parser as sre
        except ImportError:  # pragma: no cover - Python < 3.11
            import sre_parse as sre  # type: ignore[no-redef]
        return int(sre.parse(self.regex).getwidth()[1])

    def require_supported(self) -> None:
        if self.unsupported:
            first = self.unsupported[0]
            more = f" (and {len(self.unsupported) - 1} more)" if len(self.unsupported) > 1 else ""
            raise SchemaError(f"{first.args[0]}{more}", path=first.path, keyword=first.keyword)


class _Builder:
    def __init__(self, root: dict[str, Any], bounds: Bounds):
        self.root, self.bounds = root, bounds
        self.fields: list[FieldReport] = []
        self.unsupported: list[SchemaError] = []
        self._refs: list[str] = []

    def fail(self, msg: str, path: str, keyword: str) -> str:
        self.unsupported.append(SchemaError(msg, path=path or "<root>", keyword=keyword))
        return "null"  # placeholder so building can go on and collect every problem

    def resolve(self, ref: str, path: str) -> dict[str, Any] | None:
        node = lookup_ref(self.root, ref)
        if node is None:
            what = "does not resolve" if ref.startswith("#/") else "is not local (only #/... is supported)"
            self.fail(f"$ref {ref!r} {what}", path, "$ref")
        return node

    def node(self, s: dict[str, Any], path: str) -> str:
        for key in s:
            if key not in _HANDLED and key not in _ANNOTATIONS:
                self.fail(f"unsupported JSON Schema keyword {key!r}", path, key)
        if "$ref" in s:
            ref = s["$ref"]
            if ref in self._refs:
                return self.fail("recursive schemas are not supported", path, "$ref")
            target = self.resolve(ref, path)
            if target is None:
                return "null"
            self._refs.append(ref)
            try:
                return self.node({**target, **{k: v for k, v in s.items() if k != "$ref"}}, path)
            finally:
                self._refs.pop()
        if "allOf" in s:
            if len(s["allOf"]) != 1:
                return self.fail("allOf with more than one schema is not supported", path, "allOf")
            return self.node({**s["allOf"][0], **{k: v for k, v in s.items() if k != "allOf"}}, path)
        for key in ("anyOf", "oneOf"):
            if key in s:
                return "(" + "|".join(self.node(alt, path) for alt in s[key]) + ")"
        if "const" in s:
            return self.choice([s["const"]], path)
        if "enum" in s:
            return self.choice(s["enum"], path)
        kind = s.get("type")
        if isinstance(kind, list):
            return "(" + "|".join(self.node({**s, "type": k}, path) for k in kind) + ")"
        handler = {"object": self.obj, "array": self.array, "string": self.string,
                   "integer": self.integer, "number": self.number}.get(kind)
        if handler is not None:
            return handler(s, path)
        if kind == "boolean":
            self.report(path, "boolean", ["true or false"])
            return "(true|false)"
        if kind == "null":
            return "null"
        return self.fail(f"a schema without a supported type ({kind!r})", path, "type")

    def report(self, path: str, type_: str, enforced: list[str], validated: list[str] | None = None):
        self.fields.append(FieldReport(path or "<root>", type_, enforced, validated or []))

    def choice(self, values: list[Any], path: str) -> str:
        self.report(path, "enum", [f"one of {json.dumps(values, ensure_ascii=False)}"])
        return "(" + "|".join(_lit(json.dumps(v, ensure_ascii=False, separators=(",", ":")))
                              for v in values) + ")"

    def obj(self, s: dict[str, Any], path: str) -> str:
        props: dict[str, Any] = s.get("properties", {})
        extra = s.get("additionalProperties")
        if not props and isinstance(extra, dict):
            return self.fail("free-form mappings (dict[str, X]) are not supported", path,
                             "additionalProperties")
        required = set(s.get("required", []))
        parts = []
        for name, sub in props.items():
            sub_path = f"{path}.{name}" if path else name
            value = self.node(sub, sub_path)
            if name not in required and not allows_null(sub, self.root):
                value = f"({value}|null)"  # an optional key is always written; null = absent
            parts.append(_lit(json.dumps(name, ensure_ascii=False)) + ":" + value)
        return r"\{" + ",".join(parts) + r"\}"

    def array(self, s: dict[str, Any], path: str) -> str:
        if "items" not in s or not isinstance(s["items"], dict):
            return self.fail("arrays need a single `items` schema", path, "items")
        lo = int(s.get("minItems", 0))
        hi = int(s.get("maxItems", self.bounds.max_items))
        where = "schema" if "maxItems" in s else "default"
        self.report(path, "array", [f"{lo}..{hi} items ({where} bound)"])
        item = self.node(s["items"], f"{path}[]")
        if hi == 0:
            return r"\[\]"
        body = f"{item}(,{item}){{{max(lo - 1, 0)},{hi - 1}}}"
        return rf"\[{body}\]" if lo > 0 else rf"\[({body})?\]"

    def string(self, s: dict[str, Any], path: str) -> str:
        fmt, pattern = s.get("format"), s.get("pattern")
        if fmt in _FORMATS:
            regex, what = _FORMATS[fmt]
            self.report(path, f"string ({fmt})", [what], ["calendar validity"] if "date" in fmt else [])
            return f'"{regex}"'
        validated = [f"format {fmt!r}"] if fmt else []
        if pattern is not None:
            cap = int(s.get("maxLength", self.bounds.max_string))
            if "maxLength" in s or "minLength" in s:
                validated.append("length")
            self.report(path, "string", [f"pattern {pattern} (anchored, repeats <= {cap})"], validated)
            return f'"({_json_safe_pattern(pattern, cap)})"'
        lo, hi = int(s.get("minLength", 0)), int(s.get("maxLength", self.bounds.max_string))
        where = "schema" if "maxLength" in s else "default"
        self.report(path, "string", [f"{lo}..{hi} characters ({where} bound)"], validated)
        return f'"{_STR_CHAR}{{{lo},{hi}}}"'

    def _digits_and_sign(self, s: dict[str, Any]) -> tuple[int, bool, str]:
        lo = s.get("minimum", s.get("exclusiveMinimum"))
        hi = s.get("maximum", s.get("exclusiveMaximum"))
        negative = lo is None or lo < 0
        if lo is not None and hi is not None:
            digits = max(len(str(int(abs(v)))) for v in (lo, hi))
            return digits, negative, f"{digits} digits (from range)"
        return self.bounds.int_digits, negative, f"{self.bounds.int_digits} digits (default bound)"

    def integer(self, s: dict[str, Any], path: str) -> str:
        digits, negative, what = self._digits_and_sign(s)
        ranged = [k for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in s]
        self.report(path, "integer", [what] + ([] if negative else ["no sign"]),
                    ["range"] if ranged else [])
        return ("-?" if negative else "") + f"(0|[1-9]{_D}{{0,{digits - 1}}})"

    def number(self, s: dict[str, Any], path: str) -> str:
        digits, negative, what = self._digits_and_sign(s)
        dec = s.get("x-decimal", {})
        frac = dec.get("decimal_places", self.bounds.frac_digits)
        if "max_digits" in dec:
            digits = max(dec["max_digits"] - frac, 1)
            what = f"{digits} integer digits (max_digits)"
        ranged = [k for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in s]
        self.report(path, "number", [what, f"<= {frac} decimals"] + ([] if negative else ["no sign"]),
                    ["range"] if ranged else [])
        frac_part = rf"(\.{_D}{{1,{frac}}})?" if frac > 0 else ""
        return ("-?" if negative else "") + f"(0|[1-9]{_D}{{0,{digits - 1}}}){frac_part}"


def build_surface(json_schema: dict[str, Any], bounds: Bounds = Bounds()) -> Surface:
    """Compile a JSON Schema into the surface regex and a per-field report."""
    builder = _Builder(json_schema, bounds)
    regex = builder.node(json_schema, "")
    return Surface(regex, builder.fields, builder.unsupported)


# ---------------------------------------------------------------- the writer
def _number(value: float | int | decimal.Decimal, frac_digits: int = Bounds.frac_digits) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} has no JSON spelling")
    text = format(decimal.Decimal(str(value)).quantize(decimal.Decimal(1).scaleb(-frac_digits)), "f")
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


def _plain(value: Any) -> Any:
    """Python value -> JSON-ready value, keeping numbers as pre-rendered text."""
    if hasattr(value, "model_dump"):
        return {k: _plain(v) for k, v in value.__dict__.items() if k in type(value).model_fields}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, (dt.datetime, dt.time)):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        return _Num(_number(value))
    raise TypeError(f"cannot write {type(value).__name__} in the JSON surface form")


class _Num(str):
    """A number already rendered in surface form (kept apart from real strings)."""


def _write(value: Any) -> str:
    if isinstance(value, _Num):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _write(v)
                              for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_write(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _order(value: Any, s: dict[str, Any], root: dict[str, Any]) -> Any:
    """Put object keys in schema order and write absent optional keys as null."""
    s = resolve(s, root)
    if isinstance(value, dict) and "properties" in s:
        return {k: _order(value.get(k), sub, root) for k, sub in s["properties"].items()}
    if isinstance(value, dict):
        for alt in s.get("anyOf", []) + s.get("oneOf", []):
            target = resolve(alt, root)
            if set(value) <= set(target.get("properties", {})):
                return _order(value, target, root)
    if isinstance(value, list) and isinstance(s.get("items"), dict):
        return [_order(v, s["items"], root) for v in value]
    return value


def dump_json(value: Any, json_schema: dict[str, Any] | None = None) -> str:
    """Write `value` (a model instance or plain data) in the surface form."""
    plain = _plain(value)
    if json_schema is not None:
        plain = _order(plain, json_schema, json_schema)
    return _write(plain)
