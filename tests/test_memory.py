"""What keeps the engine's memory small without changing a result.

- `_pages.release` drops the pages of a never-written file mapping and refuses
  anything else (a written page would lose its data).
- The head's screen copy (int8 or bf16) is built slice by slice from a file-backed head
  whose pages go back as they are read, and it still picks what fp32 picks.
- `_pages.FileRows` reads scattered rows from the file without mapping a page, refuses a
  weight the file no longer holds, and the head and the runner's embedding use it.
- llguidance's tokenizer tables built from our token bytes equal the tables
  llguidance builds from the tokenizer JSON (tiny tokenizer here, Gemma's in
  the real-model tier).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from extractkit import _pages
from extractkit._head import Head

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pagemap and madvise are Linux's")


def file_backed(tmp_path, rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """A float32 [rows, cols] tensor on a private (copy-on-write) map of a file, like a safetensors load."""
    data = np.random.default_rng(seed).standard_normal((rows, cols), dtype=np.float32)
    path = tmp_path / "weights.bin"
    data.tofile(path)
    return torch.from_numpy(np.memmap(path, dtype=np.float32, mode="c", shape=(rows, cols)))


@linux
def test_release_drops_read_pages_and_keeps_values(tmp_path):
    weight = file_backed(tmp_path, 4096, 256)
    expected = weight.clone()
    float(weight.sum())  # read every page
    present, anonymous = _pages.resident_pages(weight)
    assert present > 200 and anonymous == 0
    assert _pages.release(weight)
    assert _pages.resident_pages(weight)[0] < present // 10
    assert torch.equal(weight, expected)  # pages come back from the file on the next read


@linux
def test_release_refuses_written_and_anonymous_memory(tmp_path):
    weight = file_backed(tmp_path, 4096, 256)
    weight[100] += 1.0  # copy-on-write: this page now exists only in memory
    written = weight.clone()
    assert not _pages.release(weight)
    assert torch.equal(weight, written)
    ordinary = torch.randn(4096, 256)
    assert not _pages.release(ordinary)


@linux
@pytest.mark.parametrize("screen", ["int8", "bf16"])
def test_screen_copy_from_a_file_backed_head_releases_it_and_stays_exact(tmp_path, screen):
    weight = file_backed(tmp_path, 40000, 64, seed=1)   # more than two slices of the head
    head = Head(weight, eos=0, screen=screen)
    hidden = torch.randn(3, 64, generator=torch.Generator().manual_seed(2))
    everything = torch.arange(weight.shape[0])
    picks = head.pick(hidden, [everything] * 3)
    assert picks == [int(torch.argmax(weight @ h)) for h in hidden]
    float(weight.sum())
    head._copy = None
    head._screen()  # rebuilding the copy reads the head again and hands it back
    assert _pages.resident_pages(weight)[0] < 100  # of ~2,500 pages: only partial slice edges stay


@linux
def test_file_rows_gather_without_mapping_pages(tmp_path):
    weight = file_backed(tmp_path, 8192, 640, seed=3)  # 20 MB: one 2 MB folio holds ~800 rows
    rows = _pages.FileRows.of(weight)
    assert rows is not None
    ids = torch.randint(0, 8192, (300,), generator=torch.Generator().manual_seed(4))
    gathered = rows.gather(ids)
    assert _pages.resident_pages(weight)[0] == 0  # nothing was mapped to read them
    assert torch.equal(gathered, weight.index_select(0, ids))
    assert rows.gather(torch.tensor([], dtype=torch.long)).shape == (0, 640)
    with pytest.raises(IndexError):
        rows.gather(torch.tensor([8192]))


@linux
def test_file_rows_refuse_what_the_file_does_not_hold(tmp_path):
    assert _pages.FileRows.of(torch.randn(64, 8)) is None  # ordinary memory
    weight = file_backed(tmp_path, 4096, 64)
    weight[7] += 1.0  # copy-on-write: the file no longer holds this tensor's values
    assert _pages.FileRows.of(weight) is None


@linux
def test_head_and_runner_read_rows_from_the_checkpoint_file(tiny_dir):
    from extractkit._gemma import GemmaRunner
    from extractkit._model import load_weights

    model = load_weights(tiny_dir, device="cpu")  # safetensors: the weights are a file mapping
    runner = GemmaRunner(model, "fp32")
    head = Head(runner.head, eos=1, screen="int8")
    assert runner._embedding_rows is not None and head._rows is not None
    tokens = torch.tensor([[5, 9, 2, 9], [0, 1, 3, 7]])
    assert torch.equal(runner._embed(tokens), model.model.embed_tokens(tokens))
    ids = torch.tensor([3, 8, 40])
    assert torch.equal(head._gather(ids), runner.head.index_select(0, ids))


def llguidance_tables(hf_tokenizer, vocab: int, tokenizer_json: str | None = None):
    """Ours, and llguidance's own from the tokenizer JSON (by default the tokenizer's own)."""
    llguidance = pytest.importorskip("llguidance")
    from extractkit._grammars.llguidance import LLGuidanceEngine

    ours = LLGuidanceEngine(hf_tokenizer, vocab).tokenizer
    reference = llguidance.LLTokenizer(tokenizer_json or hf_tokenizer.backend_tokenizer.to_str(), n_vocab=vocab,
                                       eos_token=hf_tokenizer.eos_token_id)
    return ours, reference


def assert_same_tables(ours, reference, vocab: int, texts: list[str]) -> None:
    assert ours.vocab_size == reference.vocab_size
    assert ours.eos_token == reference.eos_token
    for i in range(vocab):
        assert ours.decode_bytes([i]) == reference.decode_bytes([i]), i
        assert ours.is_special_token(i) == reference.is_special_token(i), i
    for text in texts:
        assert ours.tokenize_str(text) == reference.tokenize_str(text), text


TEXTS = ['{"total":1342.1,"date":"2024-03-05"}', "Invoice INV-7 due 5 March 2024\n  1 342,10 €",
         '","email":"jchowdhury@raju.org"', "  spaces   and\ttabs\n\n", "ünïcödé – 日本語"]


def test_llguidance_tables_from_token_bytes_equal_the_json_route(tiny_parts):
    from extractkit._grammars.llguidance import token_bytes

    _, tokenizer = tiny_parts
    assert token_bytes(tokenizer.backend_tokenizer, len(tokenizer)) is not None  # the cheap route is taken
    ours, reference = llguidance_tables(tokenizer, len(tokenizer))
    assert_same_tables(ours, reference, len(tokenizer), TEXTS)


@pytest.mark.real_model
def test_llguidance_tables_equal_the_json_route_on_gemma(real_extractor):
    # The default route's tokenizer is the SentencePiece form (`_spm.py`): tables from its pieces
    # must equal llguidance's own from Gemma's tokenizer.json.
    from extractkit._model import checkpoint_path

    tokenizer = real_extractor.backend.tokenizer
    vocab = real_extractor.backend.vocab_size
    tokenizer_json = (checkpoint_path(None) / "tokenizer.json").read_text(encoding="utf-8")
    ours, reference = llguidance_tables(tokenizer, vocab, tokenizer_json)
    assert_same_tables(ours, reference, vocab, TEXTS)


@linux
def test_only_a_file_backed_head_is_scanned_for_pages(tmp_path):
    assert Head(file_backed(tmp_path, 4096, 64), eos=0)._mapped
    assert not Head(torch.randn(4096, 64), eos=0)._mapped


@linux
def test_a_restored_qint8_screen_leaves_none_of_its_file_resident(tmp_path):
    from safetensors.torch import load_file, save_file

    from extractkit import _qint8

    if not _qint8.available(torch.device("cpu")):
        pytest.skip("fbgemm is x86's")
    weight = torch.randn(4096, 640)
    hidden = torch.randn(3, 640)
    built = _qint8.QInt8Screen(weight, _qint8.fp32_dims(hidden))
    save_file({k: v.contiguous() for k, v in built.tensors().items()}, str(tmp_path / "screen.safetensors"))
    state = load_file(str(tmp_path / "screen.safetensors"))  # memory-mapped, as `_machine.saved` reads it
    restored = _qint8.QInt8Screen.restore(state)
    # fbgemm holds its own copy; the file's pages of the int8 rows must not stay in memory beside it.
    assert _pages.resident_pages(state["int8.0"])[0] == 0
    assert torch.equal(restored.logits(hidden), built.logits(hidden))


_THRESHOLD_PROBE = """
import sys, torch
from extractkit import _pages
print(_pages.map_large_allocations())
torch.empty(16 << 20, dtype=torch.uint8).fill_(1)  # freed: glibc's own threshold would rise to 16 MB
probe = torch.empty(8 << 20, dtype=torch.uint8).fill_(1)
start = probe.data_ptr()
for line in open("/proc/self/maps"):
    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
    if lo <= start < hi:
        print("[heap]" in line)
"""


@linux
def test_large_allocations_get_their_own_mapping_unless_the_user_chose(tmp_path):
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    run = subprocess.run([sys.executable, "-c", _THRESHOLD_PROBE], env=env, capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["True", "False"]  # set here; the 8 MB block is not in the heap
    chosen = dict(env, MALLOC_MMAP_THRESHOLD_=str(64 << 20))
    run = subprocess.run([sys.executable, "-c", _THRESHOLD_PROBE], env=chosen, capture_output=True, text=True,
                         check=True)
    assert run.stdout.split() == ["False", "True"]  # the user's 64 MB threshold stands: heap


def test_llguidance_masks_with_our_one_slice_equal_the_default_slices(tiny_parts):
    """`SLICES` (one of llguidance's four, chosen for a faster cold start) changes no mask."""
    llguidance = pytest.importorskip("llguidance")
    from pydantic import BaseModel

    from extractkit._constraint import new_bitmask
    from extractkit._grammars.llguidance import SLICES, LLGuidanceEngine
    from extractkit._surface import build_surface

    class Note(BaseModel):
        title: str
        body: str | None
        total: float | None

    _, tokenizer = tiny_parts
    vocab = len(tokenizer)
    assert set(SLICES) < set(llguidance.LLTokenizer.general_slices())
    ours = LLGuidanceEngine(tokenizer, vocab).tokenizer
    default = ours.with_slices(llguidance.LLTokenizer.general_slices())
    grammar = llguidance.LLMatcher.grammar_from_regex(build_surface(Note.model_json_schema()).regex)
    answer = '{"title":"Invoice INV-7, due 5 March 2024 - paid in full","body":"  spaces \\t ünï","total":1342.1}'
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    matchers = [llguidance.LLMatcher(t, grammar) for t in (ours, default)]
    masks = new_bitmask(2, vocab)
    for token in ids:
        for row, matcher in enumerate(matchers):
            matcher.unsafe_compute_mask_ptr(masks[row].data_ptr(), masks[row].numel() * 4)
            assert matcher.consume_token(token), matcher.get_error()
        assert torch.equal(masks[0], masks[1])
    assert all(m.is_accepting() for m in matchers)
