"""Render a gold object as a messy document: the text a user would paste.

`Renderer` knows how to write one field (labelled, in a sentence, as a table);
`_forms` arranges fields into whole documents (e-mails, invoices, receipts,
notes, OCR dumps). Two rules keep every example learnable and honest:

* a field whose gold is null never appears in the text, and no distractor of
  its kind (another date, another person) is added either, so null is always
  the right answer when the text is silent;
* gold strings appear verbatim; only labels and filler get OCR noise.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from faker import Faker

from extractkit._schema import resolve

from ._formats import Style, draw_style, fmt_money, fmt_value, label
from ._values import field_kind, words

# Kinds whose distractors could be mistaken for a null field of the same kind.
GUARDED = {"person", "company", "party", "phone", "email", "address", "date", "date-time", "id", "url",
           "place", "city"}


@dataclass
class Field:
    name: str
    kind: str
    s: dict[str, Any]      # the non-null schema of the value
    value: Any


def _non_null(s: dict[str, Any], root: dict[str, Any], value: Any) -> dict[str, Any]:
    """The branch of a nullable union that `value` belongs to (deterministic, unlike `_values`)."""
    s = resolve(s, root)
    for key in ("anyOf", "oneOf"):
        alts = [resolve(a, root) for a in s.get(key, []) if resolve(a, root).get("type") != "null"]
        if alts:
            pick = next((a for a in alts if isinstance(value, dict) and set(value) <= set(a.get("properties", {}))),
                        alts[0])
            return {**{k: v for k, v in s.items() if k != key}, **pick}
    if isinstance(s.get("type"), list):
        return {**s, "type": next((t for t in s["type"] if t != "null"), "null")}
    return s


def fields_of(s: dict[str, Any], root: dict[str, Any], obj: dict[str, Any]) -> list[Field]:
    out = []
    for name, sub in resolve(s, root).get("properties", {}).items():
        ns = _non_null(sub, root, obj.get(name))
        out.append(Field(name, field_kind(name, ns), ns, obj.get(name)))
    return out


class Renderer:
    """Writes the fields of one gold object in one document's style."""

    def __init__(self, root: dict[str, Any], gold: dict[str, Any], rng: random.Random, fake: Faker,
                 locale: str):
        self.root, self.rng, self.fake, self.locale = root, rng, fake, locale
        self.fields = fields_of(root, root, gold)
        currencies = list(_currencies(root, root, gold))
        code = next((v for v in currencies if v), None) if all(currencies) else None
        self.style: Style = draw_style(rng, locale, code, bool(currencies))
        self.blocked = {f.kind for f in self.fields if f.value is None} & GUARDED
        if "party" in self.blocked:  # a null buyer: no stray people or companies either
            self.blocked |= {"person", "company"}
        self.gold_strings = {str(v) for v in _strings(gold)}
        self.title = " ".join(words(str(root.get("title", "document")))).title() or "Document"

    # -------------------------------------------------------------- pieces
    def present(self) -> list[Field]:
        """Fields to write: null ones never appear; empty lists usually stay out too."""
        return [f for f in self.fields if f.value is not None and f.value != [] and f.value != {}]

    def label(self, f: Field) -> str:
        return label(f.name, self.style)

    def scalar(self, f: Field, mark: bool = True) -> str:
        return fmt_value(f.value, f.kind, f.s, self.style, mark)

    def item_fields(self, f: Field, item: Any) -> list[Field]:
        return fields_of(resolve(f.s.get("items", {}), self.root), self.root, item)

    def is_table(self, f: Field) -> bool:
        return f.kind == "array" and any(isinstance(v, dict) for v in f.value)

    def strings_list(self, f: Field) -> list[str]:
        item_s = _non_null(f.s.get("items", {}), self.root, None)
        return [fmt_value(v, field_kind(f.name, item_s), item_s, self.style) for v in f.value]

    def kv(self, f: Field, sep: str | None = None) -> list[str]:
        """`Label: value`, with lists and nested objects as indented blocks."""
        sep = self.style.sep if sep is None else sep
        head = self.label(f)
        if f.kind == "array" and self.is_table(f):
            return [head + ":"] + self.table(f)
        if f.kind == "array":
            values = self.strings_list(f)
            if self.rng.random() < 0.5:
                return [head + sep + self.rng.choice([", ", "; ", " / "]).join(values)]
            return [head + ":"] + [self.rng.choice(["- ", "* ", "• ", "  "]) + v for v in values]
        if f.kind == "object":
            return [head + ":"] + ["  " + line for sub in fields_of(f.s, self.root, f.value)
                                   if sub.value is not None for line in self.kv(sub)]
        return [head + sep + self.scalar(f)]

    def table(self, f: Field, mark: bool = False) -> list[str]:
        """List items as columns (header + one row per item), aligned or pipe-separated."""
        cols = self.item_fields(f, f.value[0])
        head = [self.label(c) for c in cols]
        rows = []
        for item in f.value:
            cells = []
            for c in self.item_fields(f, item):
                cells.append("" if c.value is None else
                             "; ".join(self.strings_list(c)) if c.kind == "array" else
                             self.inline(c) if c.kind == "object" else self.scalar(c, mark))
            rows.append(cells)
        joiner = self.rng.choice(["  ", " | ", "\t", "   "])
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
        pad = joiner != "\t" and self.rng.random() < 0.7
        return [joiner.join(c.ljust(w) if pad else c for c, w in zip(r, widths)).rstrip()
                for r in [head] + rows]

    def inline(self, f: Field) -> str:
        """A nested object on one line: `min 30,000, max 45,000, EUR, per year`."""
        parts = [(self.label(s) + " " if s.kind not in ("enum", "currency") else "") + self.scalar(s)
                 for s in fields_of(f.s, self.root, f.value) if s.value is not None]
        return ", ".join(parts)

    def sentence(self, f: Field) -> str:
        """One field in prose."""
        lab = label(f.name, self.style).lower()
        lab = lab if not lab.isupper() else lab.title()
        if f.kind == "array" and self.is_table(f):
            items = ["(" + ", ".join(f"{label(c.name, self.style).lower()} {self.scalar(c)}"
                                     for c in self.item_fields(f, item) if c.value is not None) + ")"
                     for item in f.value]
            return f"The {lab} are: " + "; ".join(items) + "."
        if f.kind == "array":
            vals = self.strings_list(f)
            joined = vals[0] if len(vals) == 1 else ", ".join(vals[:-1]) + " and " + vals[-1]
            return self.rng.choice([f"{lab.capitalize()}: {joined}.", f"The {lab} are {joined}."])
        value = self.inline(f) if f.kind == "object" else self.scalar(f)
        if f.kind == "boolean":
            return self.rng.choice([f"{lab.capitalize()}: {value}.", f"{lab.capitalize()}? {value}."])
        templates = [f"The {lab} is {value}.", f"{lab.capitalize()}: {value}.", f"{lab.capitalize()} - {value}."]
        if f.kind in ("person", "company", "party", "place", "city", "headline", "jobtitle", "id", "email"):
            templates.append(f"{value} is listed as the {lab}.")
        if f.kind in ("money",):
            templates += [f"The {lab} comes to {value}.", f"That puts the {lab} at {value}."]
        if f.kind in ("date", "date-time", "time"):
            templates += [f"The {lab} is set for {value}.", f"{lab.capitalize()} will be {value}."]
        return self.rng.choice(templates)

    # -------------------------------------------------------------- filler
    def distractor(self, kind: str) -> str | None:
        """A labelled value of `kind` that is *not* gold (unless a null field of that kind forbids it)."""
        if kind in self.blocked:
            return None
        fk, rng = self.fake, self.rng
        text = {
            "date": lambda: rng.choice(["Printed", "Order date", "Delivery date", "Generated"]) +
            ": " + fmt_value(f"{rng.randint(2019, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                             "date", {}, self.style),
            "phone": lambda: rng.choice(["Customer care", "Helpline", "Fax", "Reception"]) + ": " + fk.phone_number(),
            "person": lambda: rng.choice(["Prepared by", "Cashier", "Served by", "Approved by"]) + ": " + fk.name(),
            "company": lambda: rng.choice(["Powered by", "Payment processed by", "In partnership with"]) + " " +
            fk.company(),
            "address": lambda: rng.choice(["Head office", "Ship to", "Registered office", "Return address"]) +
            ": " + ", ".join(fk.address().splitlines()),
            "id": lambda: rng.choice(["Our ref", "VAT reg no", "Customer ID", "Batch"]) + ": " +
            f"{rng.choice('ABKMXZ')}{rng.randint(10000, 999999)}",
            "url": lambda: fk.url().rstrip("/"),
            "money": lambda: rng.choice(["Previous balance", "Deposit paid", "Amount tendered", "Points value"]) +
            ": " + fmt_money(round(rng.uniform(1, 900), 2), self.style),
        }[kind]()
        return None if any(g and g in text for g in self.gold_strings if len(g) > 3) else text

    def distractors(self, n: int, kinds: tuple[str, ...] = ("date", "phone", "person", "company", "address",
                                                           "id", "url", "money")) -> list[str]:
        picks = self.rng.sample(kinds, min(n, len(kinds)))
        return [d for d in (self.distractor(k) for k in picks) if d]


def _currencies(s: dict[str, Any], root: dict[str, Any], obj: Any):
    """Gold values of every currency field, at any depth (None where null or absent)."""
    if not isinstance(obj, dict):
        return
    for f in fields_of(s, root, obj):
        if f.kind == "currency":
            yield f.value
        elif f.kind == "object":
            yield from _currencies(f.s, root, f.value)
        elif f.kind == "array" and isinstance(f.s.get("items"), dict):
            for item in f.value or []:
                yield from _currencies(resolve(f.s["items"], root), root, item)


def _strings(value: Any):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def ocr_noise(text: str, protected: list[str], rng: random.Random, rate: float = 0.04) -> str:
    """Scanner damage - confusable characters, split lines, stray spaces - outside gold spans."""
    mask = [False] * len(text)
    for p in sorted(set(protected), key=len, reverse=True):
        for m in re.finditer(re.escape(p), text):
            mask[m.start():m.end()] = [True] * (m.end() - m.start())
    confusions = {"O": "0", "0": "O", "l": "1", "1": "l", "I": "l", "S": "5", "B": "8", "e": "c", "m": "rn"}
    out = []
    for i, ch in enumerate(text):
        if mask[i]:
            out.append(ch)
        elif ch == " " and rng.random() < rate * 2:
            out.append(rng.choice(["  ", "\n", "   "]))
        elif ch == ":" and rng.random() < 0.3 and i + 1 < len(text) and not mask[i + 1]:
            out.append(":\n" if text[i + 1:i + 2] == " " else ":")
        elif ch in confusions and rng.random() < rate:
            out.append(confusions[ch])
        else:
            out.append(ch)
    return re.sub(r"\n +", "\n", "".join(out))
