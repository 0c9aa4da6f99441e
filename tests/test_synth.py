"""Synthetic data: gold validates, matches the grammar, and is recoverable from the text."""

from __future__ import annotations

import random
import re
import time

import pytest

pytest.importorskip("faker")

from extractkit._schema import as_output_schema, resolve  # noqa: E402
from extractkit._surface import build_surface  # noqa: E402
from extractkit.finetune import canonical_output, random_schemas, synthesize, target_json  # noqa: E402
from extractkit.finetune._forms import FORMS  # noqa: E402
from extractkit.finetune._pattern import sample_pattern  # noqa: E402
from extractkit.finetune._render import Renderer  # noqa: E402
from extractkit.finetune._values import GoldMaker, faker_for, field_kind, non_null  # noqa: E402
from extractkit.schemas import Contact, Event, Invoice, JobPosting, Receipt  # noqa: E402

BUILTIN = [Invoice, Receipt, Contact, Event, JobPosting]
RANDOM = random_schemas(20, seed=7)
SCHEMAS = BUILTIN + RANDOM
RESERVED = ("prescription", "medication", "vehicle", "car", "book", "bibliograph", "apartment", "rental",
            "parcel", "shipment", "tracking")


def _id(schema) -> str:
    return as_output_schema(schema).name


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _plain_strings(js: dict, output: dict):
    """Top-level values that are free text (not enums, dates or other formats)."""
    for name, sub in js["properties"].items():
        value = output.get(name)
        s = non_null(sub, js, random.Random(0))
        if isinstance(value, str) and "enum" not in s and "const" not in s and "format" not in s:
            yield name, value


def _in_text(value: str, text: str) -> bool:
    # A multi-line address in the text is the gold joined by ", ".
    return _norm(value) in _norm(text) or _norm(value) in _norm(text.replace("\n", ", "))


@pytest.mark.parametrize("schema", SCHEMAS, ids=_id)
def test_examples_are_valid_and_recoverable(schema):
    out = as_output_schema(schema)
    js = out.json_schema
    regex = re.compile(build_surface(js).regex)
    for ex in synthesize(schema, 30, seed=3):
        assert canonical_output(ex.output, schema) == ex.output
        assert regex.fullmatch(target_json(ex.output, schema)), ex.output
        assert ex.meta["form"] in FORMS and ex.id.startswith(f"synth-{out.name}-3-")
        for name, value in _plain_strings(js, ex.output):
            assert _in_text(value, ex.text), f"{name}={value!r} missing from {ex.meta}:\n{ex.text}"


@pytest.mark.parametrize("schema", SCHEMAS, ids=_id)
def test_null_fields_stay_out_of_the_text(schema):
    """Take a gold value, null its field, render every form: the value must not appear."""
    js = as_output_schema(schema).json_schema
    for i in range(8):
        rng = random.Random(i)
        gold = GoldMaker(js, rng, faker_for("en_US", i)).object(js)
        for name, value in list(_plain_strings(js, gold)):
            sub = js["properties"][name]
            if len(value) < 4 or not resolve(sub, js).get("anyOf", []) and "null" not in str(sub.get("type")):
                continue
            nulled = {**gold, name: None}
            for form in FORMS:
                r = Renderer(js, nulled, random.Random(i), faker_for("en_US", 1000 + i), "en_US")
                if form == "signature" and not any(f.kind == "person" for f in r.present()):
                    continue
                assert _norm(value) not in _norm(FORMS[form](r)), (name, value, form)


def test_same_seed_same_examples_and_new_seed_new_ones():
    a = synthesize(Invoice, 10, seed=1)
    b = synthesize(Invoice, 10, seed=1)
    c = synthesize(Invoice, 10, seed=2)
    assert [(e.text, e.output, e.meta) for e in a] == [(e.text, e.output, e.meta) for e in b]
    assert [e.text for e in a] != [e.text for e in c]
    assert random_schemas(5, seed=1) == random_schemas(5, seed=1) != random_schemas(5, seed=2)


def test_forms_vary_and_texts_look_like_documents():
    examples = synthesize(Invoice, 100, seed=0)
    assert len({e.meta["form"] for e in examples}) >= 5
    lengths = sorted(len(e.text) for e in examples)
    assert 150 <= lengths[len(lengths) // 2] <= 2000
    assert len({e.text for e in examples}) == 100


def test_random_schemas_are_supported_and_avoid_reserved_domains():
    for js in random_schemas(60, seed=11):
        surface = build_surface(js)
        assert not surface.unsupported, surface.unsupported
        assert 2 <= len(js["properties"]) <= 10
        assert not any(word in js["title"].lower() for word in RESERVED)


def test_field_kinds_follow_names_and_descriptions():
    assert field_kind("guestName", {"type": "string"}) == "person"
    assert field_kind("hotel_name", {"type": "string"}) == "company"
    assert field_kind("invoice_number", {"type": "string"}) == "id"
    assert field_kind("name", {"type": "string", "description": "item as printed"}) == "product"
    assert field_kind("title", {"type": "string", "description": "job title"}) == "jobtitle"
    assert field_kind("total", {"type": "number", "x-decimal": {"decimal_places": 2}}) == "money"


@pytest.mark.parametrize("pattern", [r"^[A-Z]{3}$", r"INV-\d{4,6}", r"[a-z]+@[a-z]+\.com",
                                     r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$", r"^(AB|CD)-\w{2}\s?[0-9]+$"])
def test_pattern_sampler(pattern):
    rng = random.Random(0)
    for _ in range(20):
        assert re.search(pattern, sample_pattern(pattern, rng, max_len=40))


def test_generation_is_fast():
    schemas = BUILTIN + random_schemas(5, seed=0)
    synthesize(Invoice, 5)  # build the Faker instances first: that is a one-off cost
    start = time.perf_counter()
    total = sum(len(synthesize(s, 100, seed=9)) for s in schemas)
    assert total == 1000
    assert time.perf_counter() - start < 15  # a few seconds on a laptop; slack for loaded CI
