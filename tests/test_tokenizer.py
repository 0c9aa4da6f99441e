"""Fast tier: `TextTokenizer` (the fast path's tokenizer without transformers) against transformers'."""

from __future__ import annotations

import shutil

import pytest
from _tiny import _CORPUS
from pydantic import BaseModel, Field

from extractkit import ExtractConfig, Extractor
from extractkit._tokenizer import TextTokenizer

TEXTS = _CORPUS + ["", " ", "  two  spaces ", "tab\there\n\nnewlines\r\n", "<bos> written out <eos>",
                   "émigré 5€ ½ 東京 🙂", "x" * 300]


class Part(BaseModel):
    label: str = Field(max_length=5)
    weight: float


@pytest.fixture(scope="module")
def pair(tiny_dir):
    from transformers import AutoTokenizer

    return TextTokenizer.from_folder(tiny_dir), AutoTokenizer.from_pretrained(str(tiny_dir))


def test_encodes_like_transformers(pair):
    ours, theirs = pair
    for text in TEXTS:
        for special in (True, False):
            assert ours(text, add_special_tokens=special)["input_ids"] == \
                theirs(text, add_special_tokens=special)["input_ids"], (text, special)
    assert ours("a")["input_ids"][0] == ours.bos_token_id  # the template's <bos>


def test_decodes_like_transformers(pair):
    ours, theirs = pair
    n = len(theirs)
    sequences = [theirs(t)["input_ids"] for t in TEXTS] + [list(range(n)), [1, 2, 0, 3, 5, 1], []]
    for ids in sequences:
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)


def test_special_ids_and_length_are_transformers(pair):
    ours, theirs = pair
    for name in ("bos", "eos", "pad", "unk"):
        assert getattr(ours, f"{name}_token_id") == getattr(theirs, f"{name}_token_id")
        assert getattr(ours, f"{name}_token") == getattr(theirs, f"{name}_token")
    assert len(ours) == len(theirs)


def test_a_padding_or_truncating_tokenizer_is_refused(pair):
    ours, _ = pair
    from tokenizers import Tokenizer

    padded = Tokenizer.from_str(ours.backend_tokenizer.to_str())
    padded.enable_padding(pad_id=0, pad_token="<pad>")
    with pytest.raises(ValueError, match="padding or truncation"):
        TextTokenizer(padded, {"eos_token": "<eos>"})
    with pytest.raises(ValueError, match="not in the vocabulary"):
        TextTokenizer(Tokenizer.from_str(ours.backend_tokenizer.to_str()), {"eos_token": "<nope>"})
    with pytest.raises(TypeError):
        ours(["a list"])


def test_the_cached_base_loads_it_and_extracts_what_transformers_tokenizer_does(tiny_dir, tmp_path):
    # A folder carrying the cache's mark is loaded the way the cached base model is: the fast
    # engine with llguidance gets a TextTokenizer; every other route keeps transformers'.
    from extractkit._model import _DONE_MARK

    cached = tmp_path / "cached"
    shutil.copytree(tiny_dir, cached)
    (cached / _DONE_MARK).write_text("{}")
    config = ExtractConfig(max_new_tokens=48)
    light = Extractor.from_pretrained(cached, adapter=None, numerics="fp32", config=config)
    full = Extractor.from_pretrained(tiny_dir, adapter=None, numerics="fp32", config=config)
    assert isinstance(light.backend.tokenizer, TextTokenizer)
    assert not isinstance(full.backend.tokenizer, TextTokenizer)
    assert not isinstance(Extractor.from_pretrained(cached, adapter=None, engine="xgrammar").backend.tokenizer,
                          TextTokenizer)
    texts = ["Part A12, 3.5 kg", "label: bolt weight 0.25", "nothing here"]
    assert [r.raw for r in light.extract_many(texts, Part)] == [r.raw for r in full.extract_many(texts, Part)]
    assert light.backend.count_tokens(texts[0]) == full.backend.count_tokens(texts[0])


# --- the SentencePiece form (`_spm.py`), on a small tokenizer with Gemma's layout ---

@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory):
    from _tiny import build_sentencepiece_style_tokenizer

    return build_sentencepiece_style_tokenizer(tmp_path_factory.mktemp("spm"))


def random_texts(n: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    alphabet = "".join(sorted(set("".join(_CORPUS)))) + "  \t\n\u00a0éü東京🙂<>"
    pieces = ["<table>", "<bos>", "<unk>", "<start_of_turn>", "TOTAL", " total", "2024", "  "]
    return ["".join(rng.choice(pieces) if rng.random() < 0.1 else rng.choice(alphabet)
                    for _ in range(rng.randrange(0, 60))) for _ in range(n)]


def test_the_sentencepiece_form_gives_the_ids_and_text_of_tokenizer_json(spm_dir):
    from tokenizers import Tokenizer

    from extractkit import _spm

    assert _spm.write(spm_dir)
    ours, theirs = _spm.load(spm_dir), Tokenizer.from_file(str(spm_dir / "tokenizer.json"))
    assert isinstance(ours, _spm.SpmBackend)
    for text in TEXTS + random_texts(500):
        for special in (True, False):
            assert ours.encode(text, add_special_tokens=special).ids == \
                theirs.encode(text, add_special_tokens=special).ids, (text, special)
        ids = theirs.encode(text).ids
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    n = theirs.get_vocab_size()
    assert ours.get_vocab_size() == n
    assert [ours.id_to_token(i) for i in range(n)] == [theirs.id_to_token(i) for i in range(n)]
    assert all(ours.token_to_id(theirs.id_to_token(i)) == i for i in range(n))
    assert ours.token_to_id("<nope>") is None and ours.id_to_token(n) is None
    assert {i: (t.content, t.special) for i, t in ours.get_added_tokens_decoder().items()} == \
        {i: (t.content, t.special) for i, t in theirs.get_added_tokens_decoder().items()}
    import random

    rng = random.Random(1)
    for _ in range(200):  # byte pieces out of order, special ids: decoded as tokenizers decodes them
        noise = [rng.randrange(n) for _ in range(12)]
        for skip in (False, True):
            assert ours.decode(noise, skip_special_tokens=skip) == theirs.decode(noise, skip_special_tokens=skip)


def test_text_tokenizer_takes_the_sentencepiece_form_and_llguidance_its_tables(spm_dir):
    from test_memory import TEXTS as GRAMMAR_TEXTS
    from test_memory import assert_same_tables, llguidance_tables

    from extractkit import _spm

    tokenizer = TextTokenizer.from_folder(spm_dir)
    assert isinstance(tokenizer.backend_tokenizer, _spm.SpmBackend)
    assert tokenizer("a")["input_ids"][0] == tokenizer.bos_token_id == 2
    json_text = (spm_dir / "tokenizer.json").read_text(encoding="utf-8")
    ours, reference = llguidance_tables(tokenizer, len(tokenizer), json_text)
    assert_same_tables(ours, reference, len(tokenizer), GRAMMAR_TEXTS)


def test_a_changed_tokenizer_json_is_converted_again(spm_dir, tmp_path):
    import os

    from extractkit import _spm

    folder = tmp_path / "copy"
    shutil.copytree(spm_dir, folder)  # copy2 keeps mtimes: still the converted file
    assert _spm.load(folder) is not None or _spm.write(spm_dir)
    file = folder / "tokenizer.json"
    info = file.stat()
    os.utime(file, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))
    assert _spm.load(folder) is None  # no longer the file it was converted from
    assert _spm.ensure(folder) is not None  # converted again
    (folder / _spm.MODEL).write_bytes(b"")  # sentencepiece parses an empty model without a word
    assert _spm.load(folder) is None


def test_a_tokenizer_sentencepiece_would_split_differently_is_refused_once(tiny_dir, spm_dir, tmp_path, monkeypatch):
    import json

    from extractkit import _spm

    spec = json.loads((spm_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert _spm._convertible(spec) is not None
    dropped = json.loads(json.dumps(spec))
    dropped["model"]["merges"].pop(len(dropped["model"]["merges"]) // 2)  # a pair it would still merge
    assert _spm._convertible(dropped) is None
    swapped = json.loads(json.dumps(spec))
    merges = swapped["model"]["merges"]
    merges[0], merges[-1] = merges[-1], merges[0]  # ranks no longer follow the merged ids
    assert _spm._convertible(swapped) is None
    folder = tmp_path / "byte-level"
    shutil.copytree(tiny_dir, folder)
    assert not _spm.write(folder)  # GPT-2 style bytes: not SentencePiece's layout
    monkeypatch.setattr(_spm, "_convertible", lambda spec: pytest.fail("parsed again"))
    assert _spm.ensure(folder) is None  # the refusal is remembered
    unwritable = tmp_path / "read-only"
    shutil.copytree(spm_dir, unwritable)
    (unwritable / _spm.FACTS).unlink(missing_ok=True)
    monkeypatch.setattr(_spm.os, "access", lambda path, mode: False)
    assert _spm.ensure(unwritable) is None  # not converted where it cannot be saved
    assert not isinstance(TextTokenizer.from_folder(folder).backend_tokenizer, _spm.SpmBackend)
