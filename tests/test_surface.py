"""The surface form: the grammar regex and the writer must agree, and bounds must hold."""

from __future__ import annotations

import datetime as dt
import enum
import re
from decimal import Decimal
from typing import Literal, Optional, Union

import pytest
from pydantic import BaseModel, Field

from extractkit import Bounds, SchemaError, dump_json
from extractkit._schema import as_output_schema
from extractkit._surface import build_surface
from extractkit.schemas import Contact, Event, Invoice, JobPosting, LineItem, Receipt
from extractkit.testing import minimal_match


class Color(enum.Enum):
    red = "red"
    blue = "blue"


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(ge=0, le=9)


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Everything(BaseModel):
    name: str = Field(max_length=10, description="a name")
    code: str = Field(pattern=r"^[A-Z]{3}$")
    count: int
    ratio: float
    price: Decimal = Field(max_digits=6, decimal_places=2)
    flag: bool
    color: Color
    mode: Literal["a", "b"]
    day: dt.date
    at: dt.datetime
    time: dt.time
    maybe: Optional[int] = None
    tags: list[str] = Field(max_length=3)
    pet: Union[Cat, Dog]
    items: list[LineItem] = Field(max_length=2)


def surface(model, bounds=Bounds()):
    return build_surface(as_output_schema(model).json_schema, bounds)


EXAMPLES = [
    Everything(name="Ann", code="ABC", count=-42, ratio=0.125, price=Decimal("12.50"), flag=True,
               color=Color.blue, mode="b", day=dt.date(2024, 3, 5), at=dt.datetime(2024, 3, 5, 14, 30),
               time=dt.time(9, 5), tags=["x", "y"], pet=Cat(kind="cat", lives=7),
               items=[LineItem(description="Widget", quantity=Decimal(2), amount=Decimal("3.10"))]),
    Receipt(company="ACME SDN BHD", date=dt.date(2018, 12, 25), address="1 Jalan", total=Decimal("9.00")),
    Invoice(seller="Ann's \"Shop\"\nLtd", total=Decimal("1234.56"), currency="EUR"),
    Contact(name="Zoë Ö", email="z@x.io"),
    Event(title="Standup", start_time=dt.time(9, 0), attendees=["A", "B"], online=True),
    JobPosting(title="Engineer", company="X", skills=["python"], salary={"minimum": 10, "period": "hour"}),
]


@pytest.mark.parametrize("value", EXAMPLES, ids=lambda v: type(v).__name__)
def test_writer_output_matches_grammar_and_round_trips(value):
    js = as_output_schema(type(value)).json_schema
    text = dump_json(value, js)
    assert re.fullmatch(surface(type(value)).regex, text), text
    assert type(value).model_validate_json(text) == value
    assert ": " not in text.replace('": ', "") and "\n" not in text  # compact, fixed


def test_surface_is_fixed_order_and_compact():
    text = dump_json(Receipt(company="A", total=Decimal("1.5")), as_output_schema(Receipt).json_schema)
    assert text == '{"company":"A","date":null,"address":null,"items":[],"total":1.5}'


@pytest.mark.parametrize("model", [Everything, Receipt, Invoice, Contact, Event, JobPosting])
def test_minimal_output_validates(model):
    text = minimal_match(surface(model).regex)
    model.model_validate_json(text)


def test_every_string_number_and_array_is_bounded():
    regex = surface(Everything, Bounds(max_string=7, max_items=4, int_digits=5, frac_digits=3)).regex
    outside_classes = re.sub(r"\\.|\[(\\.|[^\]])*\]", "C", regex)
    assert "*" not in outside_classes and "+" not in outside_classes  # no unbounded repetition
    long_name = dump_json(EXAMPLES[0].model_copy(update={"name": "x" * 11}))
    assert not re.fullmatch(surface(Everything).regex, long_name)  # max_length=10 enforced


def test_defaults_bound_unbounded_fields():
    class Free(BaseModel):
        text: str
        numbers: list[int]

    regex = surface(Free, Bounds(max_string=5, max_items=2, int_digits=3)).regex
    assert re.fullmatch(regex, '{"text":"abcde","numbers":[1,999]}')
    assert not re.fullmatch(regex, '{"text":"abcdef","numbers":[]}')
    assert not re.fullmatch(regex, '{"text":"a","numbers":[1,2,3]}')
    assert not re.fullmatch(regex, '{"text":"a","numbers":[1000]}')


def test_extra_keys_and_whitespace_are_not_allowed():
    regex = surface(Contact).regex
    base = dump_json(Contact(name="A"), as_output_schema(Contact).json_schema)
    assert re.fullmatch(regex, base)
    assert not re.fullmatch(regex, base[:-1] + ',"extra":1}')
    assert not re.fullmatch(regex, base.replace(":", ": ", 1))


def test_dates_are_grammar_enforced_iso():
    regex = surface(Event).regex
    good = dump_json(Event(title="x", date=dt.date(2024, 3, 5)), as_output_schema(Event).json_schema)
    assert re.fullmatch(regex, good)
    assert not re.fullmatch(regex, good.replace("2024-03-05", "05/03/2024"))
    assert not re.fullmatch(regex, good.replace("2024-03-05", "2024-13-05"))


def test_unsupported_keywords_are_named_with_their_path():
    class Deep(BaseModel):
        mapping: dict[str, int]

    class Outer(BaseModel):
        inner: list[Deep]

    with pytest.raises(SchemaError) as info:
        surface(Outer).require_supported()
    assert info.value.path == "inner[].mapping" and info.value.keyword == "additionalProperties"

    bad = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 5}}}
    err = build_surface(bad).unsupported[0]
    assert (err.path, err.keyword) == ("n", "multipleOf")


def test_recursive_schema_is_a_usage_error():
    class Node(BaseModel):
        children: list["Node"] = []

    with pytest.raises(SchemaError, match="recursive"):
        surface(Node).require_supported()


def test_report_says_what_is_enforced_and_what_is_validated_after():
    fields = {f.path: f for f in surface(Everything).fields}
    assert "ISO date YYYY-MM-DD" in fields["day"].enforced
    assert fields["pet.lives"].validated == ["range"]
    assert any("0..10 characters" in e for e in fields["name"].enforced)


def test_user_patterns_cannot_break_out_of_the_json_string():
    class Loose(BaseModel):
        email: str = Field(pattern=r"^[^@]+@.+$")
        note: str = Field(max_length=5)

    regex = surface(Loose).regex
    assert re.fullmatch(regex, '{"email":"a@b","note":"x"}')
    assert not re.fullmatch(regex, '{"email":"a","note":"@b","note":"x"}')  # quote inside the pattern
    assert not re.fullmatch(regex, '{"email":"a@b' + "c" * 500 + '","note":"x"}')  # repeats are capped


def test_an_unclosed_brace_in_a_pattern_is_a_literal_not_a_crash():
    schema = {"type": "object", "required": ["t"], "properties": {"t": {"type": "string", "pattern": "^a{$"}}}
    assert re.fullmatch(build_surface(schema).regex, '{"t":"a{"}')


def test_max_chars_bounds_every_output():
    s = surface(Receipt)
    longest = s.max_chars
    assert 500 < longest < 20000
    assert len(minimal_match(s.regex)) <= longest


def test_single_allof_and_refs_resolve_everywhere():
    schema = {"type": "object", "required": ["who"], "$defs": {"P": {"type": "object", "required": ["n"],
              "properties": {"n": {"type": "string", "maxLength": 3}}}},
              "properties": {"who": {"allOf": [{"$ref": "#/$defs/P"}], "description": "the person"},
                             "alt": {"anyOf": [{"$ref": "#/$defs/P"}, {"type": "null"}]}}}
    surf = build_surface(schema)
    assert not surf.unsupported
    assert re.fullmatch(surf.regex, dump_json({"who": {"n": "abc"}}, schema))
    assert dump_json({"who": {"n": "abc"}}, schema) == '{"who":{"n":"abc"},"alt":null}'
    bad = build_surface({"type": "object", "properties": {"x": {"$ref": "other.json#/P"}}})
    assert bad.unsupported[0].keyword == "$ref" and "not local" in str(bad.unsupported[0])
