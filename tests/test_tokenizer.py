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
