"""Fast tier: the real pipeline (transformers generate + each grammar engine) on a tiny random Gemma 3.

Random weights write nonsense, but under the grammar the nonsense must still be a
valid object of every supported type - that is the point of constrained decoding.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Literal, Optional, Union

import pytest
from pydantic import BaseModel, Field

from extractkit import Bounds, ExtractConfig, Extractor, TruncatedOutputError
from extractkit._constraint import ENGINES


class Shade(enum.Enum):
    light = "light"
    dark = "dark"


class Part(BaseModel):
    label: str = Field(max_length=5)
    weight: float


class A(BaseModel):
    kind: Literal["a"]
    x: int = Field(ge=-50, le=50)


class B(BaseModel):
    kind: Literal["b"]
    y: bool


class AllTypes(BaseModel):
    name: str = Field(max_length=6, description="a short name")
    code: str = Field(pattern=r"^[A-Z]{2}[0-9]$")
    n: int
    ratio: float
    amount: Decimal = Field(max_digits=5, decimal_places=2)
    ok: bool
    shade: Shade
    mode: Literal["on", "off"]
    day: dt.date
    at: dt.datetime
    clock: dt.time
    maybe: Optional[str] = Field(None, max_length=4)
    parts: list[Part] = Field(max_length=2)
    either: Union[A, B]


SMALL = ExtractConfig(max_new_tokens=400, batch_size=4, bounds=Bounds(max_string=6, max_items=2, int_digits=4))


@pytest.mark.parametrize("engine", ENGINES)
def test_random_weights_still_yield_valid_objects_of_every_type(tiny_backends, engine):
    extractor = Extractor(tiny_backends[engine], SMALL)
    results = extractor.extract_many(["Part AB1 weighs 2.5 kg on 2024-03-05", "nothing much"], AllTypes)
    for result in results:
        assert result.ok, (result.error, result.raw)
        assert isinstance(result.value, AllTypes)


def test_batch_order_holds_and_matches_one_at_a_time(tiny_backends):
    extractor = Extractor(tiny_backends["llguidance"], SMALL)
    texts = ["a", "a much longer text " * 5, "mid length text", "b" * 30, "last"]
    together = list(extractor.extract_many(texts, Part))
    alone = [next(extractor.extract_many([t], Part)) for t in texts]
    assert [r.index for r in together] == list(range(len(texts)))
    assert [r.raw for r in together] == [r.raw for r in alone]  # greedy: batching changes nothing


def test_truncation_raises_the_typed_error(tiny_backends):
    extractor = Extractor(tiny_backends["llguidance"], ExtractConfig(max_new_tokens=3))
    with pytest.raises(TruncatedOutputError) as info:
        extractor.extract("some text", AllTypes)
    assert info.value.raw.startswith("{")


def test_compiled_grammars_are_cached_per_schema(tiny_backends):
    backend = tiny_backends["llguidance"]
    extractor = Extractor(backend, SMALL)
    plan = extractor.plan(Part)
    assert extractor.plan(Part) is plan
    assert backend.compile(plan.surface.regex) is backend.compile(plan.surface.regex)


def test_from_pretrained_loads_a_checkpoint_folder(tiny_dir):
    extractor = Extractor.from_pretrained(tiny_dir, config=SMALL)
    assert isinstance(extractor.extract("x", Part), Part)


def test_adapter_folder_is_applied(tiny_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from extractkit._model import load_model

    base = load_model(tiny_dir)
    lora = get_peft_model(base.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    lora.save_pretrained(tmp_path / "adapter")
    extractor = Extractor.from_pretrained(tiny_dir, adapter=tmp_path / "adapter", config=SMALL)
    assert isinstance(extractor.extract("x", Part), Part)
    assert "adapter" in extractor.backend.name


def test_bad_model_and_adapter_folders_are_usage_errors(tiny_dir, tmp_path):
    from extractkit import ModelLoadError

    with pytest.raises(ModelLoadError, match="no config.json"):
        Extractor.from_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="not a LoRA adapter"):
        Extractor.from_pretrained(tiny_dir, adapter=tmp_path)


def test_unknown_engine_is_a_usage_error(tiny_parts):
    from extractkit import UsageError
    from extractkit._transformers import TransformersBackend

    with pytest.raises(UsageError, match="unknown grammar engine"):
        TransformersBackend(*tiny_parts, engine="regex-magic")


def test_a_pattern_the_engine_cannot_compile_is_a_schema_error(tiny_backends):
    from extractkit import SchemaError

    # Pydantic refuses lookarounds itself; a JSON Schema file can still carry one.
    schema = {"type": "object", "required": ["code"],
              "properties": {"code": {"type": "string", "pattern": "^(?=A)[A-Z]{3}$"}}}
    with pytest.raises(SchemaError, match="cannot compile"):
        Extractor(tiny_backends["llguidance"], SMALL).plan(schema)
