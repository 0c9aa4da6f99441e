"""Fast tier: the fine-tune module on the tiny Gemma 3 (data, golden examples, train/resume, manifest, export)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from pydantic import BaseModel, Field

from extractkit import Extractor, ExtractConfig, ModelLoadError, dump_json, render_prompt
from extractkit._schema import as_output_schema
from extractkit._surface import build_surface
from extractkit.finetune import (DataError, Example, TrainConfig, canonical_output, encode, evaluate,
                                 export_hf, read_examples, train, values_match)
from extractkit.schemas import Invoice
from extractkit.testing import FakeBackend

SMALL = ExtractConfig(max_new_tokens=60)


class Pet(BaseModel):
    name: str = Field(max_length=8, description="the pet's name")
    age: int | None = Field(None, ge=0, le=99)


PETS = [Example("Rex is 4 years old.", {"name": "Rex", "age": 4}),
        Example("Our cat Mimi.", {"name": "Mimi", "age": None}),
        Example("Bo, aged 11", {"name": "Bo", "age": 11}),
        Example("Fluff (2)", {"name": "Fluff", "age": 2})]


def _pairs():
    schema = as_output_schema(Pet)
    return [(schema, ex) for ex in PETS]


def test_training_example_is_exactly_the_inference_prompt_plus_the_decoders_json(tiny_parts):
    _, tokenizer = tiny_parts
    text = "INVOICE 7\nIssued 5 March 2024 by ACME GmbH\nTotal due: 1.234,50 EUR"
    gold = {"invoice_number": "7", "issue_date": "2024-03-05", "seller": "ACME GmbH", "currency": "EUR",
            "total": "1234.50", "line_items": []}
    schema = as_output_schema(Invoice)
    enc = encode(Example(text, canonical_output(gold, Invoice)), schema, tokenizer)
    assert enc.prompt == render_prompt(text, Invoice)
    assert enc.target == dump_json(Invoice.model_validate(gold), schema.json_schema)
    assert enc.target.startswith('{"invoice_number":"7","issue_date":"2024-03-05","due_date":null')
    assert '"total":1234.5}' in enc.target
    assert re.fullmatch(build_surface(schema.json_schema).regex, enc.target)
    prompt_ids = tokenizer(enc.prompt)["input_ids"]
    target_ids = tokenizer(enc.target, add_special_tokens=False)["input_ids"]
    assert enc.input_ids == prompt_ids + target_ids + [tokenizer.eos_token_id]
    assert enc.n_prompt == len(prompt_ids)


def test_bad_data_lines_are_reported_with_their_line_number(tmp_path):
    good = json.dumps({"text": "Rex, 4", "output": {"name": "Rex", "age": 4}})
    cases = {
        "{not json": "not valid JSON",
        json.dumps({"output": {"name": "Rex"}}): '"text" must be a non-empty string',
        json.dumps({"text": "Rex"}): 'missing "output"',
        json.dumps({"text": "Rex", "output": {"name": "Rex", "age": "old"}}): "does not match schema Pet",
        json.dumps({"text": "Rex", "output": {"name": "Rexxxxxxxxxxx"}}): "does not match schema Pet",
        json.dumps([1, 2]): "expected a JSON object",
    }
    for bad, reason in cases.items():
        path = tmp_path / "data.jsonl"
        path.write_text(good + "\n\n" + bad + "\n")
        with pytest.raises(DataError, match=re.escape(f"{path}:3: ") + ".*" + re.escape(reason)) as info:
            read_examples(path, Pet)
        assert info.value.line == 3
    with pytest.raises(DataError, match="not found"):
        read_examples(tmp_path / "missing.jsonl", Pet)


def test_gold_is_normalized_as_the_decoder_writes_it():
    assert canonical_output({"name": "Rex"}, Pet) == {"name": "Rex", "age": None}
    out = canonical_output({"seller": "A", "total": "12.50", "issue_date": "2024-03-05"}, Invoice)
    assert out["total"] == 12.5 and out["issue_date"] == "2024-03-05" and out["due_date"] is None


def test_round_trip_synthesize_train_save_load_extract(tiny_dir, tmp_path):
    from extractkit.finetune import synthesize

    schema = as_output_schema(Pet)
    data = [(schema, ex) for ex in synthesize(Pet, 4, seed=1)]
    out = tmp_path / "adapter"
    result = train(data, out, base=tiny_dir, config=TrainConfig(max_steps=2, batch_size=2, lora_r=4),
                   progress=False)
    assert result.steps == 2 and result.target_tokens > 0
    assert (out / "adapter_model.safetensors").exists() and not (out / "checkpoint").exists()
    extractor = Extractor.from_pretrained(tiny_dir, adapter=out, config=SMALL)
    assert isinstance(extractor.extract("Rex is 4 years old.", Pet), Pet)


def test_resume_after_a_crash_matches_an_uninterrupted_run(tiny_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    config = TrainConfig(max_steps=4, batch_size=1, lora_r=4, save_every=1, seed=3)
    whole = train(_pairs(), tmp_path / "whole", base=tiny_dir, config=config, progress=False)

    class Crash(Exception):
        pass

    def crash_at_2(step: int) -> None:
        if step == 2:
            raise Crash

    with pytest.raises(Crash):
        train(_pairs(), tmp_path / "resumed", base=tiny_dir, config=config, progress=False, on_checkpoint=crash_at_2)
    assert (tmp_path / "resumed" / "checkpoint").exists()
    with pytest.raises(ValueError, match="other data or settings"):
        train(_pairs()[:3], tmp_path / "resumed", base=tiny_dir, config=config, progress=False, resume=True)
    resumed = train(_pairs(), tmp_path / "resumed", base=tiny_dir, config=config, progress=False, resume=True)
    assert resumed.steps == whole.steps == 4
    a = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_adapter_for_another_base_or_prompt_version_is_refused(tiny_dir, tmp_path):
    from extractkit._manifest import BASE_MARK, MANIFEST, write_training_manifest

    out = tmp_path / "adapter"
    result = train(_pairs()[:2], out, base=tiny_dir, config=TrainConfig(max_steps=1, batch_size=1, lora_r=4),
                   progress=False)
    write_training_manifest(out, result, TrainConfig(), [as_output_schema(Pet)], {}, base="a" * 64)
    other_base = tmp_path / "other-base"
    shutil.copytree(tiny_dir, other_base)
    (other_base / BASE_MARK).write_text(json.dumps({"gguf_sha256": "b" * 64}))
    with pytest.raises(ModelLoadError, match="trained on base model aaaaaaaaaaaa"):
        Extractor.from_pretrained(other_base, adapter=out, config=SMALL)
    (other_base / BASE_MARK).write_text(json.dumps({"gguf_sha256": "a" * 64}))
    Extractor.from_pretrained(other_base, adapter=out, config=SMALL)  # the matching base loads
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["prompt_version"] = "ek-prompt-v0"
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="trained with prompt ek-prompt-v0"):
        Extractor.from_pretrained(other_base, adapter=out, config=SMALL)


def test_export_hf_writes_a_merged_checkpoint_other_tools_load(tiny_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from extractkit._model import load_weights

    adapter = tmp_path / "adapter"
    train(_pairs()[:2], adapter, base=tiny_dir, config=TrainConfig(max_steps=1, batch_size=1, lora_r=4,
                                                                   learning_rate=5e-2), progress=False)
    out = export_hf(tmp_path / "export", model=tiny_dir, adapter=adapter)
    exported = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    merged = load_weights(tiny_dir, adapter=adapter)
    plain = load_weights(tiny_dir)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(exported(ids).logits, merged(ids).logits, atol=1e-5)
        assert not torch.allclose(exported(ids).logits, plain(ids).logits, atol=1e-5)
    assert json.loads((out / "extractkit-export.json").read_text())["prompt_version"] == "ek-prompt-v1"


def test_plain_lora_merge_is_bit_identical_to_peft_and_anything_else_goes_to_peft(tiny_dir, tmp_path):
    import torch
    from peft import PeftModel

    from extractkit._gemma3 import is_light
    from extractkit._lora import merge_plain_lora
    from extractkit._model import load_weights

    adapter = tmp_path / "adapter"
    train(_pairs()[:2], adapter, base=tiny_dir, config=TrainConfig(max_steps=1, batch_size=1, lora_r=4,
                                                                   learning_rate=5e-2), progress=False)
    ours = load_weights(tiny_dir)
    assert merge_plain_lora(ours, adapter)
    theirs = PeftModel.from_pretrained(load_weights(tiny_dir), str(adapter)).merge_and_unload()
    reference, base = dict(theirs.named_parameters()), dict(load_weights(tiny_dir).named_parameters())
    changed = 0
    for name, param in ours.named_parameters():
        assert torch.equal(param, reference[name]), name
        changed += not torch.equal(param, base[name])
    assert changed > 0
    light = load_weights(tiny_dir, adapter=adapter, light=True)  # the fast engine's load: no transformers model
    assert is_light(light)
    assert {n for n, _ in light.named_parameters()} == set(reference)
    assert all(torch.equal(param, reference[name]) for name, param in light.named_parameters())
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "use_rslora": True}))
    untouched = load_weights(tiny_dir)
    before = {n: p.clone() for n, p in untouched.named_parameters()}
    assert not merge_plain_lora(untouched, adapter)  # rsLoRA scales differently: peft's job
    assert all(torch.equal(p, before[n]) for n, p in untouched.named_parameters())
    assert not is_light(load_weights(tiny_dir, adapter=adapter, light=True))  # peft merges it, into HF's model


def test_values_match_normalizes_case_spacing_and_numbers():
    assert values_match("BOOK TA .K(TAMAN DAYA) SDN BHD", "book ta .k (taman daya) sdn bhd")
    assert values_match("JOHOR BAHRU, JOHOR.", "Johor Bahru, Johor")
    assert not values_match("SDN BND", "SDN BHD")
    assert values_match(9.0, 9) and values_match(12.504, 12.5) and not values_match(12.51, 12.5)
    assert values_match(None, None) and not values_match(None, "x") and not values_match(0, None)
    assert values_match(["A ", "b"], ["a", "B"]) and not values_match(["a"], ["a", "b"])
    assert not values_match("2018-12-25", "2018-12-26") and not values_match(True, 1)


class StrictPet(BaseModel):
    name: str = Field(max_length=8)
    age: int | None = Field(None, ge=1, le=99)  # the grammar allows 0; validation then rejects it


def test_evaluate_scores_fields_nulls_and_failures():
    gold = [Example("a", {"name": "Rex", "age": 4}, id="1"), Example("b", {"name": "Mimi", "age": None}, id="2"),
            Example("c", {"name": "Bo", "age": 11}, id="3"), Example("d", {"name": "Fluff", "age": 2}, id="4")]
    answers = {"a": '{"name":"rex","age":4}', "b": '{"name":"Mimi","age":3}', "c": '{"name":"Bob","age":null}',
               "d": '{"name":"Fluff","age":0}'}
    fake = Extractor(FakeBackend(lambda prompt: answers[prompt.split("Text:\n")[1][0]]))
    report = evaluate(fake, gold, StrictPet)
    assert report["valid_rate"] == 0.75  # "d" fails validation: every field of it counts as wrong
    assert report["per_field"] == {"name": 0.5, "age": 0.25}
    assert report["micro_accuracy"] == 0.375 and report["macro_accuracy"] == 0.375
    assert report["null_precision"] == 0.0 and report["null_recall"] == 0.0
    assert {(f["id"], f["field"]) for f in report["failures"]} >= {("2", "age"), ("3", "name"), ("4", "name")}
