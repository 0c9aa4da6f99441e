"""Gold values for synthetic examples: realistic, and always valid under the schema.

A value is chosen by the field's JSON type *and* by what its name and
description say it is (`field_kind`): a `guest_name` gets a person, a
`hotel` a company, `total` an amount of money. The renderer reads the same
kinds to pick labels and formats, so the two modules agree on what a field is.

Every constraint the grammar or the validator checks is honoured here (enum,
maxLength, pattern, bounds, x-decimal digits), because one invalid gold object
would teach the model to write something the grammar forbids.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from faker import Faker

from extractkit._schema import allows_null, resolve

from ._pattern import sample_pattern
from ._pools import make_number, make_string

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "en_IN", "nl_NL", "es_ES", "en_AU", "it_IT", "en_CA"]
_FAKERS: dict[str, Faker] = {}
NULL_RATE = 0.2  # optional fields left out of the text, so the model learns to write null


def faker_for(locale: str, seed: int) -> Faker:
    """One Faker per locale (building one is slow), reseeded for every example."""
    if locale not in _FAKERS:
        _FAKERS[locale] = Faker(locale)
    fake = _FAKERS[locale]
    fake.seed_instance(seed)
    return fake


def words(text: str) -> list[str]:
    """`invoiceNumber`, `invoice_number`, `Invoice No.` -> ['invoice', 'number'] / [..., 'no']."""
    return [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", text)]


# Kinds a string field may be, by the words that name it; the first match wins,
# so specific words (email, iban) come before broad ones (name, number).
_STRING_KINDS: list[tuple[str, set[str]]] = [
    ("email", {"email", "mail"}),
    ("phone", {"phone", "tel", "telephone", "mobile", "fax", "cell"}),
    ("url", {"url", "website", "link", "homepage", "web"}),
    ("currency", {"currency", "curr"}),
    ("iban", {"iban"}),
    ("address", {"address", "street", "addr"}),
    ("country", {"country", "nationality"}),
    ("city", {"city", "town", "destination", "origin", "airport"}),
    ("place", {"location", "venue", "room", "place", "site"}),
    ("labtest", {"test", "analyte", "assay"}),
    ("product", {"item", "items", "product", "article", "goods", "model", "dish", "service", "sold",
                 "purchased", "bought", "line"}),
    ("skill", {"skill", "skills", "tag", "tags", "keyword", "keywords", "language", "languages"}),
    ("party", {"buyer", "organizer", "organiser", "payer", "payee", "beneficiary", "host", "landlord"}),
    ("company", {"company", "employer", "seller", "vendor", "merchant", "supplier", "bank", "hotel",
                 "restaurant", "organisation", "organization", "store", "shop", "airline", "insurer",
                 "provider", "lab", "laboratory", "gym", "club", "issuer", "firm", "brand",
                 "manufacturer", "clinic", "business", "utility", "insurance", "charity", "university"}),
    ("person", {"person", "guest", "patient", "employee", "customer", "attendee", "attendees", "author",
                "manager", "agent", "speaker", "applicant", "holder", "recipient", "sender", "passenger",
                "member", "doctor", "physician", "technician", "cashier", "participants", "participant",
                "candidate", "assignee", "reporter", "chair", "taxpayer", "claimant", "policyholder",
                "owner", "contact", "requester", "presenter", "referee", "insured", "donor", "student", "instructor",
                "lecturer", "approver", "chairperson", "traveller", "teacher", "witness", "witnesses", "speakers",
                "by", "name"}),
    ("id", {"number", "no", "id", "ref", "reference", "code", "invoice", "order", "ticket", "booking",
            "confirmation", "policy", "account", "serial", "claim", "case", "pnr", "flight", "receipt",
            "membership", "tin", "vat", "tax", "payroll", "meter", "seat", "gate", "terminal", "sku"}),
    ("headline", {"title", "subject", "topic", "headline", "summary", "event", "talk", "session", "course",
                  "campaign"}),
    ("text", {"description", "notes", "note", "comment", "comments", "remarks", "reason", "details",
              "diagnosis", "symptoms", "issue", "problem", "outcome", "decision", "decisions", "action", "task",
              "request", "requests", "defect", "fault", "complaint", "damage", "failure", "malfunction",
              "incident", "symptom", "error"}),
]
_WEAK = {"name", "number", "no", "id", "code", "title", "type", "value", "the", "of", "a", "description"}
_JOB = {"job", "role", "position", "hiring", "occupation", "designation"}
_ID_TAIL = {"id", "number", "no", "num", "code", "ref", "reference"}  # `member_id` is an ID, not a member


def field_kind(name: str, s: dict[str, Any]) -> str:
    """What a field *is*, from its type, format, name and description."""
    if "enum" in s or "const" in s:
        return "enum"
    kind = s.get("type")
    if kind in ("object", "array", "boolean"):
        return kind
    fmt = s.get("format")
    if fmt in ("date", "date-time", "time", "email", "uuid"):
        return fmt
    name_w, desc_w = words(name), words(s.get("description", ""))
    if kind in ("number", "integer"):
        return _numeric_kind(name_w + desc_w, kind, s)
    if "title" in name_w + desc_w[:3] and _JOB & set(name_w + desc_w):
        return "jobtitle"
    if {"title", "position", "role", "occupation"} & set(name_w) and _JOB & set(desc_w + name_w):
        return "jobtitle"
    if name_w and name_w[-1] in _ID_TAIL and not {"phone", "tel", "telephone", "mobile", "fax", "iban",
                                                   "email"} & set(name_w):
        return "id"
    # Strong name words first, then the description, then weak name words (`name`, `number`).
    for pool in ([w for w in name_w if w not in _WEAK], [w for w in desc_w if w not in _WEAK], name_w):
        for k, vocab in _STRING_KINDS:
            if vocab & set(pool):
                return "city" if k == "place" and {"city", "region", "town"} & set(desc_w) else k
    return "words"


_NUMERIC_KINDS = [
    ("percent", {"percent", "percentage", "pct", "rate", "discount_rate", "vat_rate"}),
    ("year", {"year"}),
    ("age", {"age"}),
    ("rating", {"rating", "score", "stars", "priority", "level", "grade"}),
    ("money", {"total", "amount", "price", "cost", "fee", "tax", "subtotal", "balance", "salary", "pay",
               "premium", "charge", "deposit", "gross", "net", "discount", "tip", "paid", "due", "minimum",
               "maximum", "bill", "fare", "wage", "income", "refund", "deductible", "payment", "budget"}),
    ("duration", {"minutes", "hours", "duration", "days", "nights", "months", "weeks", "term"}),
    ("count", {"quantity", "qty", "count", "guests", "seats", "units", "number", "people", "adults",
               "children", "pax", "attendees", "rooms", "items", "pieces", "tickets", "covers", "bags"}),
    ("measure", {"weight", "height", "length", "width", "kg", "km", "distance", "temperature", "result",
                 "reading", "usage", "consumption", "kwh", "volume", "level", "size", "capacity"}),
]


def _numeric_kind(ws: list[str], kind: str, s: dict[str, Any]) -> str:
    if "x-decimal" in s and s["x-decimal"].get("decimal_places", 2) == 2:
        if not {"rate", "percent", "percentage"} & set(ws):
            return "money"
    for k, vocab in _NUMERIC_KINDS:
        if vocab & set(ws):
            return k
    return "count" if kind == "integer" else "measure"


def non_null(s: dict[str, Any], root: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The schema of a non-null value of `s` (picking one branch of a union)."""
    s = resolve(s, root)
    for key in ("anyOf", "oneOf"):
        if key in s:
            alts = [a for a in s[key] if resolve(a, root).get("type") != "null"]
            rest = {k: v for k, v in s.items() if k != key}
            return non_null({**rest, **rng.choice(alts)}, root, rng)
    if isinstance(s.get("type"), list):
        types = [t for t in s["type"] if t != "null"]
        return {**s, "type": rng.choice(types)}
    if "enum" in s:
        return {**s, "enum": [v for v in s["enum"] if v is not None]}
    return s


class GoldMaker:
    """Builds one gold object; holds the example's rng and locale-bound Faker."""

    def __init__(self, root: dict[str, Any], rng: random.Random, fake: Faker):
        self.root, self.rng, self.fake = root, rng, fake

    def object(self, s: dict[str, Any], null_rate: float = NULL_RATE) -> dict[str, Any]:
        s = non_null(s, self.root, self.rng)
        out: dict[str, Any] = {}
        for name, sub in s.get("properties", {}).items():
            if allows_null(sub, self.root) and self.rng.random() < null_rate:
                out[name] = None
            else:
                out[name] = self.value(name, sub)
        cohere(out, s, self.root, self.rng)  # the arithmetic and ordering real documents obey
        return out

    def value(self, name: str, sub: dict[str, Any], null_rate: float = NULL_RATE) -> Any:
        s = non_null(sub, self.root, self.rng)
        if "const" in s:
            return s["const"]
        if "enum" in s:
            return self.rng.choice(s["enum"])
        kind = s.get("type")
        if kind == "object":
            return self.object(s, null_rate)
        if kind == "array":
            return self.array(name, s)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind in ("integer", "number"):
            return make_number(field_kind(name, s), name, s, self.rng)
        if kind == "null":
            return None
        return self.string(name, s)

    def array(self, name: str, s: dict[str, Any]) -> list[Any]:
        lo = int(s.get("minItems", 0))
        hi = min(int(s.get("maxItems", 16)), max(lo, 5))
        count = self.rng.choice([0, 1, 1, 2, 2, 3, 3, 4, 5])
        count = max(lo, min(hi, count))
        item = s.get("items", {})
        # Rows of a table are mostly complete; a missing price on every line reads as noise.
        return [self.value(name, item, NULL_RATE / 3) for _ in range(count)]

    def string(self, name: str, s: dict[str, Any]) -> str:
        kind = field_kind(name, s)
        pattern = s.get("pattern")
        lo, hi = int(s.get("minLength", 0)), int(s.get("maxLength", 200))
        for _ in range(6):  # semantic first; fall back to the pattern sampler
            text = make_string(kind, name, s, self.rng, self.fake)
            if (pattern is None or re.search(pattern, text)) and lo <= len(text) <= hi:
                return text
        if pattern is not None:
            return sample_pattern(pattern, self.rng, max_len=hi, min_len=lo)
        text = text[:hi].rstrip() if len(text) > hi else text
        return text + "x" * max(0, lo - len(text))


# ------------------------------------------------------------ coherence
# Real documents add up and run forward in time; a model trained on random
# totals and due dates before issue dates would learn that anything goes.
_START = {"start", "issue", "issued", "in", "departure", "from", "begin", "order", "opened", "admission",
          "booking", "purchase", "effective", "incident", "min", "minimum", "lower", "collected", "submitted"}
_END = {"end", "due", "out", "arrival", "to", "until", "expiry", "expires", "return", "closed",
        "discharge", "deadline", "max", "maximum", "upper", "reported", "resolved", "finish"}


def cohere(obj: dict[str, Any], s: dict[str, Any], root: dict[str, Any], rng: random.Random) -> None:
    props = s.get("properties", {})
    kinds = {k: field_kind(k, non_null(sub, root, rng)) for k, sub in props.items()}
    _order_pairs(obj, kinds, rng)
    _add_up(obj, props, kinds, root, rng)
    _email_from_name(obj, props, kinds, root, rng)


def _order_pairs(obj: dict[str, Any], kinds: dict[str, str], rng: random.Random) -> None:
    for family in (("date",), ("time",), ("date-time",), ("money", "count", "measure")):
        keys = [k for k in obj if kinds.get(k) in family and obj[k] is not None]
        starts = [k for k in keys if _START & set(words(k))]
        ends = [k for k in keys if _END & set(words(k)) and k not in starts]
        for a, b in zip(starts, ends):
            if family == ("date",):
                later = dt.date.fromisoformat(obj[a]) + dt.timedelta(days=rng.choice([1, 2, 3, 7, 14, 30, 30]))
                obj[b] = later.isoformat()
            elif family == ("time",):
                start = dt.datetime.fromisoformat(f"2000-01-01T{obj[a]}")
                end = start + dt.timedelta(minutes=rng.choice([30, 45, 60, 90, 120]))
                if end.date() == start.date():
                    obj[b] = end.time().isoformat()
                elif obj[b] < obj[a]:
                    obj[a], obj[b] = obj[b], obj[a]
            elif obj[b] < obj[a]:
                obj[a], obj[b] = obj[b], obj[a]


def _money_keys(props: dict[str, Any], kinds: dict[str, str]) -> dict[str, str]:
    """Role of each money field: unit price, subtotal, tax, total or line amount."""
    roles = {}
    for key in props:
        ws, low = set(words(key)), key.lower()
        if kinds.get(key) != "money":
            continue
        if "unit" in ws or low in ("price", "rate") and "amount" in props:
            roles[key] = "unit"
        elif "subtotal" in low.replace("_", "") or "net" in ws:
            roles[key] = "subtotal"
        elif ws & {"tax", "vat", "gst"}:
            roles[key] = "tax"
        elif ws & {"total", "due", "grand"} or ws == {"amount"} or ws == {"price"}:
            roles[key] = "total"
    return roles


def _add_up(obj, props, kinds, root, rng) -> None:
    roles = _money_keys(props, kinds)
    line_sum = None
    for key, value in obj.items():
        item_s = non_null(props[key], root, rng).get("items") if isinstance(value, list) else None
        if item_s is not None and value and isinstance(value[0], dict):
            line_sum = _fix_lines(value, non_null(item_s, root, rng), root, rng)
    by_role = {r: k for k, r in roles.items() if obj.get(k) is not None}
    sub = line_sum if line_sum is not None else _num(obj.get(by_role.get("subtotal")))
    if sub is None:
        return
    if "subtotal" in by_role:
        obj[by_role["subtotal"]] = _like(obj[by_role["subtotal"]], sub)
    tax = Decimal(0)
    if "tax" in by_role:
        tax = sub * Decimal(str(rng.choice([0.05, 0.06, 0.07, 0.1, 0.19, 0.2, 0.21])))
        obj[by_role["tax"]] = _like(obj[by_role["tax"]], tax)
        tax = _num(obj[by_role["tax"]])
    if "total" in by_role:
        obj[by_role["total"]] = _like(obj[by_role["total"]], sub + tax)


def _fix_lines(items: list[dict], s: dict[str, Any], root, rng) -> Decimal | None:
    """Line amount = quantity x unit price; returns the sum of line amounts."""
    props = s.get("properties", {})
    kinds = {k: field_kind(k, non_null(sub, root, rng)) for k, sub in props.items()}
    roles = _money_keys(props, kinds)
    unit = next((k for k, r in roles.items() if r == "unit"), None)
    line = next((k for k, r in roles.items() if r != "unit"), None)
    qty = next((k for k, kd in kinds.items() if kd == "count"), None)
    if line is None:
        return None
    total = Decimal(0)
    for item in items:
        if unit and item.get(unit) is not None:  # no quantity on the line reads as one unit
            count = _num(item.get(qty)) if qty and item.get(qty) is not None else Decimal(1)
            item[line] = _like(item[line], _num(item[unit]) * count)
        if item.get(line) is None:
            return None
        total += _num(item[line])
    return total


def _num(value: Any) -> Decimal | None:
    return None if value is None or isinstance(value, bool) else Decimal(str(value))


def _like(old: Any, new: Decimal) -> Any:
    """`new` in the type and precision of `old` (Decimal cents, float or int)."""
    if isinstance(old, int):
        return int(new.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    cents = new.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return cents if isinstance(old, Decimal) else float(cents)


def _email_from_name(obj, props, kinds, root, rng) -> None:
    """jane.doe@acme.com for Jane Doe at Acme: the pairing a reader expects."""
    person = next((obj[k] for k, kd in kinds.items() if kd == "person" and isinstance(obj.get(k), str)), None)
    for key, kind in kinds.items():
        if kind != "email" or not isinstance(obj.get(key), str) or person is None or rng.random() < 0.3:
            continue
        ascii_name = unicodedata.normalize("NFKD", person).encode("ascii", "ignore").decode().lower()
        parts = re.findall(r"[a-z]+", ascii_name)
        if len(parts) < 2:
            continue
        local = rng.choice([f"{parts[0]}.{parts[-1]}", f"{parts[0][0]}{parts[-1]}", parts[0]])
        email = f"{local}@{obj[key].split('@')[-1]}"
        s = non_null(props[key], root, rng)
        if len(email) <= s.get("maxLength", 200) and re.search(s.get("pattern", ""), email):
            obj[key] = email
