"""The public surface, the error tree and the pipeline wiring, with the FakeBackend."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from decimal import Decimal

import pytest
from pydantic import BaseModel, Field

import extractkit
from extractkit import (ExtractConfig, Extractor, InputError, InvalidOutputError, OutputError, SchemaError,
                        TruncatedOutputError, UsageError, render_prompt)
from extractkit.schemas import Contact, Receipt
from extractkit.testing import FakeBackend


def test_public_surface_is_sorted_and_complete():
    assert extractkit.__all__ == sorted(extractkit.__all__)
    public = {n for n in dir(extractkit) if not n.startswith("_") and n not in ("schemas", "testing")}
    modules = {n for n in public if type(getattr(extractkit, n)).__name__ == "module"}
    assert public - modules - {"annotations"} == set(extractkit.__all__) - {"__version__"}


def test_import_is_light():
    heavy = ("torch", "transformers", "pyarrow", "pandas", "ray")
    code = f"import sys, extractkit, extractkit.ray; print(*[m in sys.modules for m in {heavy!r}])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"] * len(heavy)


def test_error_tree_says_whose_fault():
    assert issubclass(SchemaError, UsageError) and issubclass(InputError, UsageError)
    assert issubclass(TruncatedOutputError, OutputError) and issubclass(InvalidOutputError, OutputError)
    assert not issubclass(OutputError, UsageError)


def test_fake_backend_returns_canned_objects_and_sees_the_prompt():
    fake = FakeBackend(responses=[{"name": "Ada Lovelace", "email": "ada@example.org"}])
    contact = Extractor(fake).extract("Ada Lovelace <ada@example.org>", Contact)
    assert contact == Contact(name="Ada Lovelace", email="ada@example.org")
    assert "Ada Lovelace <ada@example.org>" in fake.prompts[0]
    assert "email: string max 100 or null - e-mail address" in fake.prompts[0]


def test_fake_backend_without_responses_writes_a_valid_placeholder():
    receipt = Extractor(FakeBackend()).extract("anything", Receipt)
    assert isinstance(receipt, Receipt)


def test_fake_backend_refuses_what_the_grammar_forbids():
    fake = FakeBackend(responses=['{"name": "spaced"}'])
    with pytest.raises(UsageError, match="does not match"):
        Extractor(fake).extract("x", Contact)


def test_invalid_output_carries_raw_text():
    # The grammar allows 2024-02-30 (it checks shape, not the calendar); validation catches it.
    raw = '{"company":"A","date":"2024-02-30","address":null,"items":[],"total":1}'
    with pytest.raises(InvalidOutputError) as info:
        Extractor(FakeBackend([raw])).extract("x", Receipt)
    assert info.value.raw == raw and "date" in str(info.value)


def test_truncation_is_a_typed_error_with_raw_text():
    ex = Extractor(FakeBackend([Receipt(company="A" * 100, total=Decimal(1))]), ExtractConfig(max_new_tokens=5))
    with pytest.raises(TruncatedOutputError) as info:
        ex.extract("x", Receipt)
    assert info.value.raw.startswith('{"company":"AAAA')


@pytest.mark.parametrize("bad, message", [("", "empty"), ("  \n\t", "empty"), (b"bytes", "bytes"),
                                          (42, "must be a str"), (None, "must be a str")])
def test_bad_inputs_are_usage_errors(bad, message):
    with pytest.raises(InputError, match=message):
        Extractor(FakeBackend()).extract(bad, Contact)


def test_too_long_input_is_rejected_before_generation():
    fake = FakeBackend()
    with pytest.raises(InputError, match="too long"):
        Extractor(fake).extract("word " * 40_000, Contact)
    assert fake.prompts == []


def test_extract_many_keeps_order_and_isolates_failures():
    fake = FakeBackend(lambda prompt: {"name": prompt.split("Text:\n")[1].split("\n")[0]})
    results = list(Extractor(fake).extract_many(["first", "", "third", 7], Contact))
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert [r.ok for r in results] == [True, False, True, False]
    assert results[0].value.name == "first" and results[2].value.name == "third"
    assert isinstance(results[1].error, InputError)
    with pytest.raises(InputError):
        results[3].unwrap()


def test_unsupported_schema_fails_before_any_generation():
    class Bad(BaseModel):
        data: dict[str, int]

    fake = FakeBackend()
    with pytest.raises(SchemaError) as info:
        Extractor(fake).extract("x", Bad)
    assert info.value.path == "data" and fake.prompts == []


def test_json_schema_dicts_validate_with_jsonschema():
    schema = {"title": "Person", "type": "object", "required": ["name", "age"],
              "properties": {"name": {"type": "string", "maxLength": 20},
                             "age": {"type": "integer", "minimum": 0, "maximum": 150},
                             "born": {"type": "string", "format": "date"}}}
    ok = Extractor(FakeBackend(['{"name":"Al","age":40,"born":null}'])).extract("x", schema)
    assert ok == {"name": "Al", "age": 40}  # null for an optional, non-nullable key means absent
    with pytest.raises(InvalidOutputError, match="age"):
        Extractor(FakeBackend(['{"name":"Al","age":151,"born":null}'])).extract("x", schema)


def test_render_prompt_is_versioned_and_carries_the_schema():
    class Ticket(BaseModel):
        flight: str = Field(max_length=8, description="flight number like BA117")
        departs: dt.datetime

    prompt = render_prompt("BA117 leaves at 9", Ticket)
    assert prompt.startswith(f"<extract {extractkit.PROMPT_VERSION}>")
    assert "flight: string max 8 - flight number like BA117" in prompt
    assert "departs: datetime" in prompt
    assert prompt.endswith("Text:\nBA117 leaves at 9\nJSON:\n")
