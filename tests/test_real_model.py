"""Real-model tier: the 270M base model from PyPI, end to end (library and CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from extractkit import InputError
from extractkit.schemas import Contact, Invoice, Receipt

pytestmark = pytest.mark.real_model
EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


class Address(BaseModel):
    street: str | None = Field(None, max_length=80)
    city: str | None = Field(None, max_length=40)
    country: str | None = Field(None, max_length=40)


class Person(BaseModel):
    name: str = Field(max_length=60, description="full name")
    role: str | None = Field(None, max_length=60, description="job title")


class Company(BaseModel):
    name: str = Field(max_length=80, description="the company's name")
    address: Address
    people: list[Person] = Field(max_length=4, description="people named in the text")
    founded: int | None = Field(None, ge=1800, le=2100, description="year founded")


def test_invoice_receipt_and_contact_are_valid_instances(real_extractor):
    invoice = real_extractor.extract((EXAMPLES / "invoice.txt").read_text(), Invoice)
    receipt = real_extractor.extract((EXAMPLES / "receipt.txt").read_text(), Receipt)
    assert isinstance(invoice, Invoice) and isinstance(invoice.total, Decimal)
    assert isinstance(receipt, Receipt)
    results = list(real_extractor.extract_many([(EXAMPLES / "contact.txt").read_text(), "   "], Contact))
    assert isinstance(results[0].value, Contact)
    assert isinstance(results[1].error, InputError)


def test_a_user_defined_nested_schema(real_extractor):
    text = ("Lumen Robotics S.L. was founded in 2015 in Madrid, Spain (Calle de Alcala 120). "
            "CEO Maria Gonzalez and CTO Jon Arrieta lead the team.")
    company = real_extractor.extract(text, Company)
    assert isinstance(company, Company) and isinstance(company.address, Address)
    assert all(isinstance(p, Person) for p in company.people)


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "extractkit", *args], input=stdin,
                          capture_output=True, text=True, timeout=600)


def test_cli_extracts_files_and_stdin_as_jsonl(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    out = _cli("extract", "--schema", "invoice", str(EXAMPLES / "invoice.txt"), str(empty))
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 1, out.stderr  # one input failed
    assert len(lines) == 2
    Invoice.model_validate(json.loads(lines[0]))
    assert "InputError" in json.loads(lines[1])["_error"]
    assert "1 ok, 1 failed" in out.stderr

    out = _cli("extract", "--schema", "receipt", "-", stdin=(EXAMPLES / "receipt.txt").read_text())
    assert out.returncode == 0, out.stderr
    Receipt.model_validate(json.loads(out.stdout))


def test_cached_base_tokenizer_equals_transformers_own_load():
    # _model loads the cached base's tokenizer.json directly (~1 s, not ~3 s): it must be the same tokenizer.
    from transformers import AutoTokenizer

    from extractkit._model import checkpoint_path, load_tokenizer

    path = checkpoint_path(None)
    ours, theirs = load_tokenizer(path), AutoTokenizer.from_pretrained(str(path))
    assert json.loads(ours.backend_tokenizer.to_str()) == json.loads(theirs.backend_tokenizer.to_str())
    assert ours.all_special_ids == theirs.all_special_ids and ours.get_added_vocab() == theirs.get_added_vocab()
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id, ours.padding_side) == \
        (theirs.bos_token_id, theirs.eos_token_id, theirs.pad_token_id, theirs.padding_side)
    for text in ["Total: 1 342,10 €\n\nDate 5/3/2024", "<start_of_turn>user\nhi", " lead", ""]:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"]


def test_the_fast_paths_tokenizer_encodes_and_decodes_like_transformers():
    # The fast engine loads the cached base's tokenizer without transformers (`_tokenizer.py`), as
    # a SentencePiece model (`_spm.py`): on real receipts and their answers, the prompts and
    # Gemma's special and byte-fallback tokens it must be the same.
    import random

    from extractkit._model import checkpoint_path, load_tokenizer
    from extractkit._prompt import calibration_prompt, render_prompt
    from extractkit._tokenizer import TextTokenizer

    from extractkit._spm import SpmBackend

    path = checkpoint_path(None)
    light, full = load_tokenizer(path, light=True), load_tokenizer(path)
    assert isinstance(light, TextTokenizer) and len(light) == len(full)
    assert isinstance(light.backend_tokenizer, SpmBackend)  # Gemma's SentencePiece form (`_spm.py`)
    assert [light.bos_token_id, light.eos_token_id, light.pad_token_id, light.unk_token_id] == \
        [full.bos_token_id, full.eos_token_id, full.pad_token_id, full.unk_token_id]
    dev = Path(__file__).resolve().parents[1] / "finetune" / "data" / "sroie" / "dev.jsonl"
    rows = [json.loads(line) for line in dev.read_text().splitlines()]
    texts = [row["text"] for row in rows[:60]] + [json.dumps(row["output"], ensure_ascii=False) for row in rows[:60]]
    texts += [calibration_prompt(), render_prompt(texts[0], Invoice),
              "<start_of_turn>user\n\t\u00a0½ 東京 🙂\r\n\n\n   x", ""]
    rng = random.Random(0)
    for text in texts:
        ids = full(text)["input_ids"]
        assert light(text)["input_ids"] == ids
        assert light(text, add_special_tokens=False)["input_ids"] == full(text, add_special_tokens=False)["input_ids"]
        assert light.decode(ids) == full.decode(ids)
        noise = [rng.randrange(len(full)) for _ in range(40)] + [0, 1, 2, 3, 106, 107, 238]
        assert light.decode(noise) == full.decode(noise)
        assert light.decode(noise, skip_special_tokens=True) == full.decode(noise, skip_special_tokens=True)


def test_a_cold_extraction_never_imports_transformers():
    # Importing transformers' tokenizer classes was 1.0-1.7 s of a 2-core cold start; the default
    # path (fast engine, llguidance, cached base + bundled adapter) no longer needs any of it.
    script = ("import sys, extractkit\n"
              "from extractkit.schemas import Receipt\n"
              "r = extractkit.extract('ABC MART 02/01/2019 TOTAL 3.50', Receipt)\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_copy_drafts_are_confirmed_and_change_nothing():
    # The fine-tuned model copies values out of the document, so some copy-drafted tokens must be
    # confirmed; confirmed or not, the text is what decoding without them writes (fp32: exact).
    from extractkit import ExtractConfig, Extractor

    extractor = Extractor.from_pretrained(numerics="fp32", config=ExtractConfig(max_new_tokens=256))
    text = (EXAMPLES / "receipt.txt").read_text()
    copied = list(extractor.extract_many([text], Receipt))[0]  # the engine's default: copy drafts on
    fast = extractor.backend._fast
    kept, fast.copy = fast.stats["copy_kept"], 0
    plain = list(extractor.extract_many([text], Receipt))[0]
    assert copied.raw == plain.raw and copied.error is None
    assert kept > 0 and fast.stats["copy_kept"] == kept
