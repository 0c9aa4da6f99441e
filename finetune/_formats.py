"""How one value or one label is written in a document: the spellings people use.

A `Style` is drawn once per document, so a document is self-consistent (one
date style, one number style, one currency mark) while the corpus varies.
Every formatted gold value is recorded in `Style.protected`; OCR noise never
touches those spans, so the gold stays recoverable from the text.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ._values import words

_MONTHS = {
    "en": "January February March April May June July August September October November December",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
    "nl": "januari februari maart april mei juni juli augustus september oktober november december",
}
# Numeric day/month orders only where the day cannot be read as a month (day > 12).
_DATE_STYLES = ["iso", "d_month_y", "month_d_y", "mon_d_y", "dd_mon_y", "d_mon_y_dash", "wd_d_mon_y",
                "dmy_slash", "mdy_slash", "dmy_dot", "dmy_dot_short", "ymd_slash", "local_long"]
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "INR": "Rs.", "JPY": "¥", "MYR": "RM", "AUD": "A$",
            "CAD": "C$", "SGD": "S$", "SEK": "kr", "NZD": "NZ$", "CHF": "CHF"}
_BOOLS = [("yes", "no"), ("Yes", "No"), ("YES", "NO"), ("✓", "✗"), ("Y", "N"), ("included", "not included"),
          ("true", "false"), ("[x]", "[ ]")]
_PERIODS = {"hour": ["per hour", "/hr", "hourly", "an hour"], "month": ["per month", "/month", "monthly"],
            "year": ["per year", "p.a.", "annually", "/yr"], "week": ["per week", "weekly"],
            "day": ["per day", "daily"]}
_ABBREV = {"number": ["No.", "#", "Number", "Nr."], "quantity": ["Qty", "Quantity", "Qty."],
           "amount": ["Amount", "Amt"], "reference": ["Ref.", "Reference"], "telephone": ["Tel."],
           "description": ["Description", "Item", "Details"], "address": ["Address", "Addr."]}
_SYNONYMS = {
    "total": ["Total", "Amount due", "Grand total", "TOTAL", "Total due", "Balance due", "Total amount"],
    "subtotal": ["Subtotal", "Sub-total", "Net amount", "Total before tax"],
    "tax": ["Tax", "VAT", "Sales tax", "GST", "Tax amount"],
    "invoice_number": ["Invoice No.", "Invoice #", "Invoice number", "Inv. no", "Bill No"],
    "issue_date": ["Invoice date", "Date of issue", "Issued", "Date"],
    "due_date": ["Due date", "Payment due", "Pay by", "Due"],
    "seller": ["From", "Seller", "Supplier", "Vendor", "Issued by"],
    "buyer": ["Bill to", "Billed to", "Customer", "Client", "Sold to"],
    "company": ["Company", "Organisation", "Employer", "Firm"],
    "name": ["Name", "Full name", "Contact name"],
    "email": ["Email", "E-mail", "Mail", "Email address"],
    "phone": ["Phone", "Tel", "Mobile", "Ph.", "Telephone"],
    "address": ["Address", "Addr.", "Postal address"],
    "start_time": ["Start", "Starts", "From", "Start time", "Begins at"],
    "end_time": ["End", "Ends", "Until", "End time", "Finishes at"],
    "location": ["Location", "Venue", "Where", "Place"],
    "organizer": ["Organizer", "Hosted by", "Host", "Organised by"],
    "attendees": ["Attendees", "Participants", "Invited", "Who"],
    "contact_email": ["Apply to", "Contact", "Send CV to", "Email"],
    "employment_type": ["Employment type", "Contract", "Job type", "Type"],
    "skills": ["Skills", "Requirements", "Must have", "Required skills"],
    "line_items": ["Items", "Description", "Services"],
    "unit_price": ["Unit price", "Price", "Rate", "Unit"],
}


@dataclass
class Style:
    """The spelling choices for one document."""

    rng: random.Random
    lang: str = "en"
    date_style: str = "iso"
    decimal_comma: bool = False
    thousands: str = ","
    currency: str | None = None      # ISO code from the gold, if the schema has one
    mark: str = ""                   # how amounts are marked: "", a symbol or a code
    mark_after: bool = False
    bools: tuple[str, str] = ("yes", "no")
    label_case: str = "title"
    sep: str = ": "
    protected: list[str] = field(default_factory=list)

    def keep(self, text: str) -> str:
        """Record a formatted gold value so noise leaves it alone."""
        if text:
            self.protected.append(text)
        return text


def draw_style(rng: random.Random, locale: str, currency: str | None, has_currency_field: bool) -> Style:
    lang = locale[:2] if locale[:2] in _MONTHS else "en"
    comma = lang in ("de", "fr", "es", "nl", "it") and rng.random() < 0.7
    style = Style(rng=rng, lang=lang, date_style=rng.choice(_DATE_STYLES), decimal_comma=comma,
                  thousands=rng.choice([".", " ", ""]) if comma else rng.choice([",", ",", ""]),
                  currency=currency, bools=rng.choice(_BOOLS),
                  label_case=rng.choice(["title", "title", "upper", "lower", "sentence"]),
                  sep=rng.choice([": ", ": ", ":  ", " - ", ":\t", " : "]))
    # A null currency must not be guessable from the amounts; a schema without
    # a currency field may show any mark, as real documents do.
    code = currency or (None if has_currency_field else rng.choice(["USD", "EUR", "GBP", "MYR", "INR", None]))
    if code:
        style.mark = rng.choice([code, code, _SYMBOLS.get(code, code)])
        style.mark_after = comma and rng.random() < 0.6
    return style


# ---------------------------------------------------------------- labels
def label(name: str, style: Style) -> str:
    """A human label for a field: a synonym, an abbreviation or the name itself."""
    rng, key = style.rng, name.lower()
    options = list(_SYNONYMS.get(key, []))
    ws = words(name) or [name]
    plain = " ".join(rng.choice(_ABBREV[w]) if w in _ABBREV and rng.random() < 0.5 else w for w in ws)
    options += [plain] * 3
    text = rng.choice(options)
    return _case(text, style.label_case)


def _case(text: str, case: str) -> str:
    if case == "upper":
        return text.upper()
    if case == "lower":
        return text.lower()
    if case == "sentence":
        return text[:1].upper() + text[1:]
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


# ---------------------------------------------------------------- values
def fmt_date(iso: str, style: Style) -> str:
    d = dt.date.fromisoformat(iso[:10])
    months = _MONTHS["en"].split()
    name, mon = months[d.month - 1], months[d.month - 1][:3]
    numeric_ok = d.day > 12
    key = style.date_style
    if key in ("dmy_slash", "mdy_slash", "dmy_dot", "dmy_dot_short") and not numeric_ok:
        key = "d_month_y"
    return {
        "iso": iso[:10],
        "d_month_y": f"{d.day} {name} {d.year}",
        "month_d_y": f"{name} {d.day}, {d.year}",
        "mon_d_y": f"{mon} {d.day}, {d.year}",
        "dd_mon_y": f"{d.day:02d} {mon} {d.year}",
        "d_mon_y_dash": f"{d.day}-{mon}-{d.year}",
        "wd_d_mon_y": f"{d.strftime('%a')} {d.day} {mon} {d.year}",
        "dmy_slash": f"{d.day:02d}/{d.month:02d}/{d.year}",
        "mdy_slash": f"{d.month:02d}/{d.day:02d}/{d.year}",
        "dmy_dot": f"{d.day:02d}.{d.month:02d}.{d.year}",
        "dmy_dot_short": f"{d.day:02d}.{d.month:02d}.{d.year % 100:02d}",
        "ymd_slash": f"{d.year}/{d.month:02d}/{d.day:02d}",
        "local_long": f"{d.day}. {_MONTHS[style.lang].split()[d.month - 1]} {d.year}"
                      if style.lang == "de" else f"{d.day} {_MONTHS[style.lang].split()[d.month - 1]} {d.year}",
    }[key]


def fmt_time(iso: str, style: Style) -> str:
    t = dt.time.fromisoformat(iso)
    secs = f":{t.second:02d}" if t.second else ""
    if style.lang == "en" and style.date_style in ("month_d_y", "mon_d_y", "mdy_slash", "wd_d_mon_y"):
        hour = t.hour % 12 or 12
        return f"{hour}:{t.minute:02d}{secs} {'AM' if t.hour < 12 else 'PM'}"
    if style.lang == "fr" and not secs:
        return f"{t.hour}h{t.minute:02d}"
    return f"{t.hour:02d}:{t.minute:02d}{secs}"


def fmt_number(value: Any, style: Style, places: int | None = None, group4: bool = False) -> str:
    """1234.5 -> '1,234.50' / '1.234,50' / '1234.50' (places=None keeps the value's own digits)."""
    d = Decimal(str(value))
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places))
    whole, _, frac = format(abs(d), "f").partition(".")
    if len(whole) > 4 or (len(whole) == 4 and group4 and style.rng.random() < 0.7):
        groups = []
        while whole:
            groups.insert(0, whole[-3:])
            whole = whole[:-3]
        whole = style.thousands.join(groups)
    text = whole + ((("," if style.decimal_comma else ".") + frac) if frac else "")
    return ("-" if d < 0 else "") + text


def fmt_money(value: Any, style: Style, mark: bool = True) -> str:
    amount = fmt_number(value, style, 2, group4=True)
    if not (mark and style.mark):
        return amount
    return f"{amount} {style.mark}" if style.mark_after else f"{style.mark}{'' if len(style.mark) <= 2 and not style.mark.isalpha() else ' '}{amount}"


def fmt_enum(value: Any, style: Style) -> str:
    if not isinstance(value, str):
        return str(value)
    if value in _PERIODS:
        return style.rng.choice(_PERIODS[value])
    text = value.replace("_", style.rng.choice([" ", "-"]))
    return style.rng.choice([text, text.capitalize(), text.title(), text.upper()])


def fmt_value(value: Any, kind: str, s: dict[str, Any], style: Style, mark: bool = True) -> str:
    """One scalar gold value as it appears in text (recorded as protected)."""
    if kind == "date":
        text = fmt_date(value, style)
    elif kind == "date-time":
        date, _, clock = value.partition("T")
        text = f"{fmt_date(date, style)}{style.rng.choice([' ', ', ', ' at '])}{fmt_time(clock[:8], style)}"
    elif kind == "time":
        text = fmt_time(value, style)
    elif kind == "boolean":
        text = style.bools[0 if value else 1]
    elif kind == "enum":
        text = fmt_enum(value, style)
    elif kind == "money" and s.get("type") == "number":
        text = fmt_money(value, style, mark)
    elif kind == "percent":
        text = fmt_number(value, style) + style.rng.choice(["%", " %"])
    elif kind == "year" or (isinstance(value, int) and value < 10000):
        text = str(value)  # years and small counts are never grouped: '2,005' is not a year
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = fmt_number(value, style)
    else:
        text = str(value)
    return style.keep(text)
