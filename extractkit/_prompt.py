"""Stage 2 - prompt: the one versioned template that inference and fine-tuning share.

The schema part comes first and the document last, so every document of a
schema shares the same prompt prefix (a later engine can prefill it once).
The schema is described compactly - one line per field with its type, bounds
and description - so that a schema the model has never seen still tells it
what each field means.
"""

from __future__ import annotations

import json
from typing import Any

from ._schema import as_output_schema, resolve

PROMPT_VERSION = "ek-prompt-v1"

TEMPLATE = (
    "<extract {version}>\n"
    "Extract the fields described by the schema from the text and answer with one JSON object. "
    "Copy values as written in the text; write dates as YYYY-MM-DD and numbers without currency "
    "symbols; use null when the text does not give a value.\n"
    "Schema:\n{schema}\n"
    "Text:\n{text}\n"
    "JSON:\n"
)


def _type_name(s: dict[str, Any], root: dict[str, Any]) -> str:
    s = resolve(s, root)
    if "const" in s:
        return json.dumps(s["const"], ensure_ascii=False)
    if "enum" in s:
        return "one of " + "|".join(json.dumps(v, ensure_ascii=False) for v in s["enum"])
    for key in ("anyOf", "oneOf"):
        if key in s:
            return " or ".join(_type_name(alt, root) for alt in s[key])
    kind = s.get("type")
    if isinstance(kind, list):
        return " or ".join(_type_name({**s, "type": k}, root) for k in kind)
    if kind == "string":
        fmt = {"date": "date", "date-time": "datetime", "time": "time"}.get(s.get("format", ""))
        extra = f" max {s['maxLength']}" if "maxLength" in s else ""
        return fmt or f"string{extra}"
    if kind == "array":
        return f"list of {_type_name(s.get('items', {}), root)}"
    if kind == "object":
        return str(s.get("title", "object"))
    return str(kind)


def describe_schema(json_schema: dict[str, Any]) -> str:
    """One line per field, nested objects indented under their field."""
    lines: list[str] = []

    def walk(s: dict[str, Any], indent: str, seen: tuple[str, ...]) -> None:
        s = resolve(s, json_schema)
        for name, sub in s.get("properties", {}).items():
            full = resolve(sub, json_schema)
            desc = full.get("description")
            lines.append(f"{indent}{name}: {_type_name(sub, json_schema)}" + (f" - {desc}" if desc else ""))
            for obj in _objects_below(full, json_schema):
                title = str(obj.get("title", ""))
                if title not in seen:
                    walk(obj, indent + "  ", seen + (title,))

    walk(json_schema, "", (str(json_schema.get("title", "")),))
    return "\n".join(lines)


def _objects_below(s: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    """The object schemas a field holds directly, through lists and unions."""
    s = resolve(s, root)
    if s.get("type") == "object" and "properties" in s:
        return [s]
    if s.get("type") == "array" and isinstance(s.get("items"), dict):
        return _objects_below(s["items"], root)
    return [o for key in ("anyOf", "oneOf") for alt in s.get(key, []) for o in _objects_below(alt, root)]


def render_prompt_for_schema(text: str, json_schema: dict[str, Any]) -> str:
    """The exact prompt for `text` under a JSON Schema."""
    return TEMPLATE.format(version=PROMPT_VERSION, schema=describe_schema(json_schema), text=text)


def prompt_prefix(json_schema: dict[str, Any]) -> str:
    """The part of every prompt of this schema before the document (the engine caches it)."""
    return TEMPLATE.split("{text}")[0].format(version=PROMPT_VERSION, schema=describe_schema(json_schema))


def render_prompt(text: str, schema: Any) -> str:
    """Public: the exact prompt extractkit feeds the model for `text` and `schema`.

    `schema` is a Pydantic model class or a JSON Schema dict. Other engines can
    drive an exported extractkit model with this string.
    """
    return render_prompt_for_schema(text, as_output_schema(schema).json_schema)


# The one prompt the fast engine calibrates qint8 numerics on (`_engine.FastDecoder`): which
# input dims stay fp32 is read off the first hidden states a model sees, on average over their
# positions, and the instruction + schema of different schemas pick different ones. Always this
# prompt, so a process's outputs never depend on which schema it extracted first. It mixes the
# kinds of text extractkit reads (a mail with a signature, an invoice, a receipt) and of fields
# (names, an email, a phone, dates, amounts, a list).
CALIBRATION_SCHEMA: dict[str, Any] = {
    "title": "Document", "type": "object",
    "properties": {
        "sender": {"type": ["string", "null"], "description": "who wrote it"},
        "email": {"type": ["string", "null"]},
        "phone": {"type": ["string", "null"]},
        "company": {"type": ["string", "null"], "description": "the seller's name"},
        "date": {"type": ["string", "null"], "format": "date"},
        "items": {"type": "array", "items": {"title": "Item", "type": "object", "properties": {
            "description": {"type": "string"}, "quantity": {"type": ["number", "null"]},
            "amount": {"type": ["number", "null"]}}}},
        "total": {"type": ["number", "null"], "description": "the amount paid, tax included"},
        "currency": {"type": ["string", "null"], "enum": ["EUR", "USD", "GBP", "MYR", None]},
    },
}
CALIBRATION_TEXT = (
    "From: Jonas Weber <j.weber@example-logistics.de>\nSubject: Re: order 4471 - invoice attached\n\n"
    "Hi Priya,\nthanks for the quick turnaround. Invoice INV-2024-0311 (issued 12 March 2024, due "
    "11 April 2024) covers 3 x pallet racking at EUR 1,250.00 and installation (1 day) at EUR 640.00; "
    "VAT 19%: EUR 1,034.10, total EUR 6,474.10.\n\nBest regards,\nJonas Weber | Head of Operations\n"
    "Example Logistics GmbH, Hafenstrasse 9, 20457 Hamburg | +49 40 1234 5678\n\n"
    "SUNRISE MART SDN BHD (12345-K)\nNO 8, JALAN MERANTI 3, 47100 PUCHONG\n"
    "INVOICE NO: CS10031  DATE: 05/03/2024 14:21\n2 x MINERAL WATER 1.5L  3.00\n"
    "1 x BREAD WHOLEMEAL  4.20\nTOTAL (INCL GST 6%): RM 7.20\nTHANK YOU, PLEASE COME AGAIN")


def calibration_prompt() -> str:
    return render_prompt_for_schema(CALIBRATION_TEXT, CALIBRATION_SCHEMA)
