"""Realistic raw values by field kind: the strings and numbers `_values` builds gold from.

Faker supplies what varies by locale (people, companies, addresses, phones);
the small pools here supply what Faker lacks or does badly for documents
(products, job titles, event names, identifiers in the shapes businesses use).
Numbers are drawn on the scale a field's name implies: a unit price is not a salary.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from faker import Faker

_CURRENCIES = ["USD", "EUR", "GBP", "INR", "AUD", "CAD", "CHF", "MYR", "SGD", "JPY", "SEK", "NZD"]
_PRODUCT_ADJ = ["Organic", "Wireless", "Stainless", "Premium", "Classic", "Compact", "Heavy-duty", "Eco",
                "Large", "Mini", "Deluxe", "Pro", "Standard", "Refill", "Frozen", "Fresh"]
_PRODUCT_NOUN = ["Coffee Beans 1kg", "Mouse", "Steel Bottle 750ml", "Desk Lamp", "Notebook A5", "USB-C Cable 2m",
                 "Printer Paper (500 sheets)", "Office Chair", "Green Tea", "Basmati Rice 5kg", "Olive Oil 1L",
                 "Toner Cartridge", "Safety Gloves", "LED Bulb 9W", "Yoga Mat", "Chicken Rice", "Teh Tarik",
                 "Whole Milk 2L", "Hand Soap", "Monitor 27\"", "Keyboard", "Backpack", "Paint Brush Set",
                 "Extension Cord", "Water Filter", "Croissant", "Cappuccino", "Roti Canai", "Batteries AA x4"]
_SERVICES = ["Consulting services", "Website maintenance", "Monthly support plan", "On-site installation",
             "Design work", "Translation (EN>DE)", "Cloud hosting", "Training session", "Labour",
             "Delivery charge", "Annual licence", "Data migration", "Audit fee", "Cleaning service"]
_JOBS = ["Software Engineer", "Senior Data Analyst", "Account Manager", "Registered Nurse", "Product Designer",
         "Operations Coordinator", "Marketing Manager", "Customer Success Lead", "Financial Controller",
         "Warehouse Supervisor", "Head of Sales", "Backend Developer", "HR Business Partner",
         "Office Administrator", "Mechanical Engineer", "Research Scientist", "Legal Counsel"]
_SKILLS = ["Python", "SQL", "Excel", "project management", "Java", "communication", "AWS", "Kubernetes",
           "negotiation", "German", "Spanish", "React", "customer service", "data analysis", "Figma",
           "accounting", "SAP", "Docker", "leadership", "TypeScript", "bookkeeping", "first aid"]
_HEADLINES = ["Quarterly planning review", "Budget kickoff 2025", "Annual general meeting", "Team offsite",
              "Product launch webinar", "Intro to Machine Learning", "Design sprint retro",
              "Customer onboarding call", "Board meeting", "Login page returns error 500",
              "Refund not received", "Safety training", "Hiring committee sync", "Scaling Postgres at work",
              "Cannot reset password", "Supplier negotiation", "Open Source in Practice", "Summer party"]
_TEXTS = ["Customer reports the device stops charging after ten minutes.",
          "Approved pending receipt of the signed form.", "Please deliver to the side entrance.",
          "Follow-up visit recommended in six weeks.", "Minor water damage in the kitchen.",
          "Budget to be revisited next quarter.", "Window seat requested, vegetarian meal.",
          "Late payment fee waived as a one-off.", "Results within normal range.",
          "Agreed to move the launch by two weeks."]
_LAB_TESTS = ["Hemoglobin", "Glucose (fasting)", "LDL cholesterol", "HDL cholesterol", "TSH", "Creatinine",
              "Vitamin D (25-OH)", "ALT", "HbA1c", "Sodium", "Potassium", "Ferritin", "CRP", "Triglycerides"]
_VENUES = ["Room 4.12", "Conference Room B", "Main Hall", "Studio 3", "Training Room 1", "Auditorium 2",
           "Board Room, 3rd floor", "Cafe Central", "Meeting room 'Everest'", "Hall C"]
_ID_SHAPES = {
    "invoice": ["INV-{y}-{n4}", "INV{n5}", "{y}/{n3}", "F{n6}", "{A}{A}-{n4}"],
    "order": ["PO-{n5}", "SO{n6}", "ORD-{n4}-{A}", "{n7}"],
    "ticket": ["TCK-{n5}", "#{n6}", "SUP-{n4}", "INC{n7}"],
    "booking": ["{A}{A}{A}{n3}{A}", "BK-{n6}", "{n9}", "RES{n5}"],
    "confirmation": ["{A}{A}{A}{n3}{A}", "{n8}", "CNF-{n6}"],
    "policy": ["POL-{n7}", "{A}{A}{n8}", "P-{n3}-{n5}"],
    "claim": ["CLM-{y}-{n5}", "C{n7}"],
    "account": ["{n8}", "{n4}-{n4}-{n2}", "ACC{n6}"],
    "flight": ["{A}{A}{n3}", "{A}{A} {n4}"],
    "": ["{A}{A}-{n5}", "{n6}", "{A}{n3}-{n4}", "REF{n6}", "{y}-{n4}"],
}


def make_string(kind: str, name: str, s: dict[str, Any], rng: random.Random, fake: Faker) -> str:
    """A realistic string for a field of this kind (the caller checks the schema's bounds)."""
    if kind in ("date", "date-time", "time"):
        return _temporal(kind, rng)
    if kind == "uuid":
        return str(fake.uuid4())
    maker = _STRING_MAKERS.get(kind)
    return maker(rng, fake, name) if maker else _words(rng, fake, name)


def _temporal(kind: str, rng: random.Random) -> str:
    day = dt.date(2019, 1, 1) + dt.timedelta(days=rng.randrange(8 * 365))
    clock = f"{rng.choice(range(7, 21)):02d}:{rng.choice([0, 0, 15, 30, 45, 10, 20, 50]):02d}:00"
    return {"date": day.isoformat(), "time": clock}.get(kind, f"{day.isoformat()}T{clock}")


def _person(rng: random.Random, fake: Faker, name: str = "") -> str:
    return fake.name() if rng.random() < 0.8 else f"{fake.first_name()} {fake.last_name()}"


def _company(rng: random.Random, fake: Faker, name: str = "") -> str:
    return fake.company()


def _party(rng: random.Random, fake: Faker, name: str = "") -> str:
    return _company(rng, fake) if rng.random() < 0.6 else _person(rng, fake)


def _identifier(rng: random.Random, fake: Faker, name: str) -> str:
    key = next((k for k in _ID_SHAPES if k and k in name.lower()), "")
    shape = rng.choice(_ID_SHAPES[key])
    fill = {"y": str(rng.randint(2019, 2026)), "A": None}
    out, i = [], 0
    while i < len(shape):
        if shape[i] == "{":
            j = shape.index("}", i)
            tag = shape[i + 1:j]
            if tag == "A":
                out.append(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ"))
            elif tag == "y":
                out.append(fill["y"])
            else:
                out.append("".join(rng.choice("0123456789") for _ in range(int(tag[1:]))))
            i = j + 1
        else:
            out.append(shape[i])
            i += 1
    return "".join(out)


def _product(rng: random.Random, fake: Faker, name: str = "") -> str:
    if rng.random() < 0.25:
        return rng.choice(_SERVICES)
    noun = rng.choice(_PRODUCT_NOUN)
    return f"{rng.choice(_PRODUCT_ADJ)} {noun}" if rng.random() < 0.5 else noun


def _iban(rng: random.Random, fake: Faker, name: str = "") -> str:
    try:
        return fake.iban()
    except AttributeError:  # a locale without a bank provider
        return "DE" + "".join(rng.choice("0123456789") for _ in range(20))


def _words(rng: random.Random, fake: Faker, name: str = "") -> str:
    return " ".join(fake.words(rng.randint(1, 3))).capitalize()


_STRING_MAKERS = {
    "email": lambda r, f, n: f.email() if r.random() < 0.5 else f.company_email(),
    "phone": lambda r, f, n: f.phone_number(),
    "url": lambda r, f, n: f.url().rstrip("/") if r.random() < 0.6 else f"www.{f.domain_name()}",
    "currency": lambda r, f, n: r.choice(_CURRENCIES[:6] * 3 + _CURRENCIES),
    "iban": _iban,
    "address": lambda r, f, n: ", ".join(x.strip() for x in f.address().splitlines() if x.strip()),
    "country": lambda r, f, n: f.country(),
    "city": lambda r, f, n: f.city(),
    "place": lambda r, f, n: r.choice([f.city(), r.choice(_VENUES), f"{r.choice(_VENUES)}, {f.city()}"]),
    "product": _product,
    "skill": lambda r, f, n: r.choice(_SKILLS),
    "party": _party,
    "company": _company,
    "person": _person,
    "id": _identifier,
    "headline": lambda r, f, n: r.choice(_HEADLINES),
    "labtest": lambda r, f, n: r.choice(_LAB_TESTS),
    "text": lambda r, f, n: r.choice(_TEXTS),
    "jobtitle": lambda r, f, n: r.choice(_JOBS) if r.random() < 0.7 else f.job(),
}

# Typical magnitudes by what a money field's name says (min, max, chance of a whole amount).
_MONEY_SCALES = [({"salary", "income", "wage", "gross", "minimum", "maximum"}, (1800, 120000, 0.7)),
                 ({"price", "unit", "fee", "tip", "fare", "charge"}, (1, 450, 0.3)),
                 ({"tax", "discount", "deposit", "refund"}, (2, 600, 0.1)),
                 ({"total", "amount", "subtotal", "balance", "paid", "due", "premium", "bill"}, (8, 6000, 0.2))]


def make_number(kind: str, name: str, s: dict[str, Any], rng: random.Random) -> int | float | Decimal:
    """A number on the scale the field implies, inside every bound the schema sets."""
    places = s.get("x-decimal", {}).get("decimal_places")
    raw = _raw_number(kind, name, rng)
    raw = _clamp(raw, s, rng)
    if s.get("type") == "integer":
        return int(round(raw))
    places = 2 if places is None and kind in ("money", "measure", "percent") else places
    if places is None:
        return round(raw, 2)
    value = Decimal(str(round(raw, places)))
    digits = s.get("x-decimal", {}).get("max_digits")
    if digits is not None and abs(value) >= Decimal(10) ** (digits - places):
        value = Decimal(10) ** (digits - places) - 1
    return value if "x-decimal" in s else float(value)


def _raw_number(kind: str, name: str, rng: random.Random) -> float:
    ws = set(name.lower().replace("_", " ").split())
    if kind == "money":
        lo, hi, whole = next((scale for vocab, scale in _MONEY_SCALES
                              if vocab & ws or any(v in name.lower() for v in vocab)), (5, 3000, 0.2))
        value = lo * (hi / lo) ** rng.random()  # log-uniform: many small amounts, a few large
        return float(round(value)) if rng.random() < whole else round(value, 2)
    return {
        "percent": lambda: rng.choice([5, 7.5, 10, 12.5, 15, 18, 19, 20, 21, 25, 3.5, 50]),
        "year": lambda: rng.randint(1990, 2026),
        "age": lambda: rng.randint(18, 88),
        "rating": lambda: rng.randint(1, 5),
        "measure": lambda: round(rng.uniform(0.2, 250), rng.choice([0, 1, 2])),
        "duration": lambda: rng.choice([1, 2, 3, 5, 7, 10, 14, 30, 45, 60, 90]),
        "count": lambda: rng.choice([1, 1, 1, 2, 2, 3, 4, 5, 6, 10, 12, 24]),
    }.get(kind, lambda: rng.randint(1, 100))()


def _clamp(raw: float, s: dict[str, Any], rng: random.Random) -> float:
    lo = s.get("minimum", s.get("exclusiveMinimum"))
    hi = s.get("maximum", s.get("exclusiveMaximum"))
    step = 1 if s.get("type") == "integer" else 0.01
    lo = None if lo is None else lo + (step if "exclusiveMinimum" in s and "minimum" not in s else 0)
    hi = None if hi is None else hi - (step if "exclusiveMaximum" in s and "maximum" not in s else 0)
    if (lo is not None and raw < lo) or (hi is not None and raw > hi):
        lo = lo if lo is not None else hi - 100
        hi = hi if hi is not None else lo + 100
        raw = rng.uniform(lo, hi) if s.get("type") != "integer" else rng.randint(int(lo), int(hi))
        raw = max(lo, min(hi, round(raw, 2)))
    return raw
