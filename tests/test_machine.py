"""What a machine measured is remembered across processes (`_machine.py`), and only what is right.

- The first answer written wins, and every later question gets it without measuring.
- Saved tensors come back equal; a damaged file, or one the caller refuses, is built again and replaced.
- The head's int8 screen copy is saved per checkpoint file, restored equal, and refused when
  it does not match the weights the head has.
"""

from __future__ import annotations

import sys

import pytest
import torch

from extractkit import _machine
from extractkit._head import Head

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="FileRows reads /proc")


@pytest.fixture
def remember(tmp_path, monkeypatch):
    monkeypatch.setenv("EXTRACTKIT_REMEMBER", "1")
    monkeypatch.setenv("EXTRACTKIT_CACHE_DIR", str(tmp_path))
    return tmp_path / "machine"


def test_the_first_answer_is_remembered(remember):
    asked = []
    assert _machine.choice("which kernel", lambda: asked.append(1) or "bf16") == "bf16"
    assert _machine.choice("which kernel", lambda: asked.append(1) or "fp32") == "bf16"
    assert asked == [1]
    assert _machine.choice("another question", lambda: "qint8") == "qint8"
    assert len(list(remember.glob("*.json"))) == 2


def test_turned_off_it_measures_every_time(remember, monkeypatch):
    monkeypatch.setenv("EXTRACTKIT_REMEMBER", "0")
    assert _machine.choice("q", lambda: "a") == "a"
    assert _machine.choice("q", lambda: "b") == "b"
    assert not remember.exists()


def test_saved_tensors_come_back_and_a_damaged_file_is_rebuilt(remember):
    built = {"w": torch.arange(12, dtype=torch.int8).view(3, 4), "x": torch.tensor([1.5], dtype=torch.float64)}
    first = _machine.tensors("key", lambda: built, lambda saved: True)
    again = _machine.tensors("key", lambda: pytest.fail("built twice"), lambda saved: True)
    assert all(torch.equal(first[k], again[k]) for k in built)
    (path,) = remember.glob("*.safetensors")
    path.write_bytes(b"not a safetensors file")
    assert torch.equal(_machine.tensors("key", lambda: built, lambda saved: True)["w"], built["w"])


def test_a_refused_saved_file_is_rebuilt_and_replaced(remember):
    old = {"w": torch.zeros(2, dtype=torch.int8)}
    new = {"w": torch.ones(2, dtype=torch.int8)}
    _machine.tensors("key", lambda: old, lambda saved: True)
    assert torch.equal(_machine.tensors("key", lambda: new, lambda saved: bool(saved["w"].all()))["w"], new["w"])
    assert torch.equal(_machine.tensors("key", lambda: pytest.fail("built again"), lambda saved: True)["w"], new["w"])


@linux
def test_the_head_screen_is_saved_per_file_and_checked(remember, tmp_path):
    from test_memory import file_backed

    weight = file_backed(tmp_path, 20000, 64, seed=5)
    hidden = torch.randn(2, 64, generator=torch.Generator().manual_seed(6))
    everything = [torch.arange(20000)] * 2
    expected = [int(torch.argmax(weight @ h)) for h in hidden]
    fresh = Head(weight, eos=0, screen="int8")
    assert fresh.pick(hidden, everything) == expected
    assert len(list(remember.glob("*.safetensors"))) == 1
    restored = Head(weight, eos=0, screen="int8")
    assert restored.pick(hidden, everything) == expected
    assert torch.equal(restored._copy.copy, fresh._copy.copy)
    assert torch.equal(restored._copy.scales, fresh._copy.scales)
    assert restored._copy.error == fresh._copy.error
    # A saved copy that is not these weights' (here: another head's) is refused and rebuilt.
    (tmp_path / "other").mkdir()
    other = Head(file_backed(tmp_path / "other", 20000, 64, seed=7), eos=0, screen="int8")
    wrong = other._build("int8")
    assert not wrong.matches(restored._rows)
