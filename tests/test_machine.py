"""What a machine measured is remembered across processes (`_machine.py`), and only what is right.

- The first answer written wins, and every later question gets it without measuring.
- Saved tensors come back equal; a damaged file, or one the caller refuses, is built again and replaced.
- The head's int8 and qint8 screen copies are saved per checkpoint file, restored equal, and
  refused when they do not match the weights the head has.
"""

from __future__ import annotations

import sys

import pytest
import torch

from extractkit import _machine, _screens
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
    wrong = _screens.build("int8", other.weight)
    assert not wrong.matches(restored._rows)


@linux
def test_the_qint8_head_screen_is_saved_per_file_and_checked(remember, tmp_path):
    """Rows past one fbgemm slice (16,384), so a saved screen spans several packed parts."""
    from test_memory import file_backed

    from extractkit._qint8 import QInt8Screen

    weight = file_backed(tmp_path, 20000, 64, seed=5)
    hidden = torch.randn(3, 64, generator=torch.Generator().manual_seed(6))
    hidden[:, [2, 9]] *= 30
    everything = [torch.arange(20000)] * 3
    expected = [int(torch.argmax(weight @ h)) for h in hidden]
    fresh = Head(weight, eos=0, screen="qint8")
    assert fresh.pick(hidden, everything) == expected
    assert len(list(remember.glob("*.safetensors"))) == 1
    restored = Head(weight, eos=0, screen="qint8")
    assert restored.pick(hidden, everything) == expected
    assert len(list(remember.glob("*.safetensors"))) == 1  # read back, not built again
    assert torch.equal(restored._copy.linear.dims, fresh._copy.linear.dims)
    assert torch.equal(restored._copy.logits(hidden), fresh._copy.logits(hidden))
    assert restored._copy.bound(hidden[0], 1.0) == fresh._copy.bound(hidden[0], 1.0)
    # First rows with other outlier dims: built for them (the saved one's bound would be loose),
    # and saved in its place - one file per head, however many runs see other dims.
    other_rows = torch.randn(2, 64, generator=torch.Generator().manual_seed(9))
    other = Head(weight, eos=0, screen="qint8")
    assert other.pick(other_rows, everything[:2]) == [int(torch.argmax(weight @ h)) for h in other_rows]
    assert not torch.equal(other._copy.linear.dims, fresh._copy.linear.dims)
    assert len(list(remember.glob("*.safetensors"))) == 1
    again = Head(weight, eos=0, screen="qint8")
    again.pick(other_rows, everything[:2])
    assert torch.equal(again._copy.linear.dims, other._copy.linear.dims)
    saved = fresh._copy.tensors()
    assert QInt8Screen.matches(saved, weight)
    (tmp_path / "other").mkdir()
    assert not QInt8Screen.matches(saved, file_backed(tmp_path / "other", 20000, 64, seed=7))


def test_qint8_layers_restored_from_their_saved_rows_compute_the_same():
    from extractkit import _qint8

    generator = torch.Generator().manual_seed(5)
    weight, x = torch.randn(48, 40, generator=generator), torch.randn(6, 40, generator=generator)
    x[:, 3] *= 25
    built = _qint8.QLinear(weight, _qint8.fp32_dims(x))
    restored = _qint8.QLinear.restore(built.state())
    assert torch.equal(restored(x), built(x))
    assert torch.equal(restored.dims, built.dims) and not restored.rest[built.dims].any()


def test_the_runners_qint8_layers_are_remembered_per_weights_and_calibration(remember, tiny_dir, monkeypatch):
    # A second runner on the same files and calibration prompt reads every int8 form back (no
    # layer quantized, no calibration pass) and computes the same; other weights build their own.
    # All of a runner's forms are one file, and only the 4 most recently used weights keep theirs.
    from extractkit import _gemma3, _qint8
    from extractkit._gemma import GemmaRunner

    calibration, prompt = list(range(3, 40)), torch.tensor([[2, 40, 41, 42, 43, 44, 45, 46]])
    layers = remember / "layers"

    def hidden(model) -> torch.Tensor:
        runner = GemmaRunner(model, numerics="qint8")
        runner.calibrate(calibration)
        return runner.forward(runner.new_cache(1, 16), slice(0, 1), prompt, torch.tensor([0]))

    def adapter(n: int):
        model = _gemma3.load(tiny_dir)
        model.source += f"; merged with adapter {n}"
        return model

    first = hidden(_gemma3.load(tiny_dir))
    forms = 4 * _gemma3.load(tiny_dir).config.num_hidden_layers  # q+k+v, o, gate+up, down a layer
    assert len(list(layers.glob("*.safetensors"))) == 1
    assert not list(remember.glob("*.safetensors"))
    quantized, build = [], _qint8.QLinear.__init__
    monkeypatch.setattr(_qint8.QLinear, "__init__", lambda self, *a, **k: quantized.append(1) or build(self, *a, **k))
    forwards, forward = [], GemmaRunner.forward
    monkeypatch.setattr(GemmaRunner, "forward", lambda self, *a, **k: forwards.append(1) or forward(self, *a, **k))
    assert torch.equal(hidden(_gemma3.load(tiny_dir)), first)
    assert not quantized and len(forwards) == 1  # only the prompt's own pass
    hidden(adapter(1))
    assert len(quantized) == forms
    assert len(list(layers.glob("*.safetensors"))) == 2
    uncalibrated = GemmaRunner(_gemma3.load(tiny_dir), numerics="qint8")  # no calibration: nothing to name it by
    uncalibrated.forward(uncalibrated.new_cache(1, 16), slice(0, 1), prompt, torch.tensor([0]))
    assert len(list(layers.glob("*.safetensors"))) == 2
    for n in range(2, 6):
        hidden(adapter(n))
    assert len(list(layers.glob("*.safetensors"))) == 4
    del quantized[:]
    hidden(adapter(5))  # among the 4 kept: read back
    assert not quantized


def test_llguidance_token_bytes_are_remembered_per_tokenizer_file(remember, tiny_dir, monkeypatch):
    # A TextTokenizer names its file; llguidance's token spelling (~0.5 s for Gemma's 262k ids on
    # 2 cores) is read back in later processes, equal to spelling it again.
    from extractkit._grammars import llguidance as engine
    from extractkit._tokenizer import TextTokenizer

    tokenizer = TextTokenizer.from_folder(tiny_dir)
    backend, n = tokenizer.backend_tokenizer, len(tokenizer)
    spelled = engine.token_bytes(backend, n)
    assert engine.remembered_token_bytes(backend, n, tokenizer.source) == spelled
    monkeypatch.setattr(engine, "token_bytes", lambda *args: pytest.fail("spelled again"))
    assert engine.remembered_token_bytes(backend, n, tokenizer.source) == spelled
    built = engine.LLGuidanceEngine(tokenizer, n)  # reads them back, and its tables work
    matcher = built.compile('"(a|b)"').matcher()
    bitmask = torch.zeros(1, (n + 31) // 32, dtype=torch.int32)
    matcher.fill(bitmask, 0)
    assert bitmask.any()
    assert len(list(remember.glob("*.safetensors"))) == 1


@pytest.mark.parametrize("numerics", ["fp32", "qint8"])
def test_a_prompt_prefix_is_remembered_per_weights_numerics_and_ids(remember, tiny_dir, monkeypatch, numerics):
    # A schema's prefix prefill is read back by a later runner on the same weights: the same keys
    # and values, no forward pass. Other weights or other ids prefill their own; a group keeps 16.
    from extractkit import _gemma3
    from extractkit._gemma import GemmaRunner

    ids = [2] + list(range(40, 90))

    def runner(model=None) -> GemmaRunner:
        made = GemmaRunner(model or _gemma3.load(tiny_dir), numerics=numerics)
        made.calibrate(list(range(3, 40)))  # qint8: what names its forms (no-op for fp32)
        return made

    first = runner().prefilled(ids)
    prefixes = remember / "prefixes"
    assert len(list(prefixes.glob("*.safetensors"))) == 1
    forwards, forward = [], GemmaRunner.forward
    monkeypatch.setattr(GemmaRunner, "forward", lambda self, *a, **k: forwards.append(1) or forward(self, *a, **k))
    again = runner().prefilled(ids)
    assert not forwards
    assert all(torch.equal(a, b) for a, b in zip(first.k + first.v, again.k + again.v))
    other = _gemma3.load(tiny_dir)
    other.source += "; merged with another adapter"
    runner(other).prefilled(ids)
    assert len(forwards) == 1 + (numerics == "qint8")  # qint8 calibrates the other weights too
    for n in range(20):
        runner().prefilled(ids[: 10 + n])
    assert len(list(prefixes.glob("*.safetensors"))) == 16


def random_lora(folder, model, r: int = 4, seed: int = 3):
    """A plain LoRA adapter folder (peft's file layout) on every projection of `model`."""
    import json

    from safetensors.torch import save_file

    torch.manual_seed(seed)
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            state[f"base_model.model.{name}.lora_A.weight"] = torch.randn(r, module.in_features) * 0.1
            state[f"base_model.model.{name}.lora_B.weight"] = torch.randn(module.out_features, r) * 0.1
    folder.mkdir()
    save_file(state, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": r, "lora_alpha": 8}))
    return folder


def test_a_deferred_lora_is_merged_before_use_and_skipped_under_remembered_qint8_forms(remember, tiny_dir,
                                                                                       tmp_path, monkeypatch):
    # The fast engine's load leaves the LoRA pending (`_lora.py`): every runner computes what one
    # on the eagerly merged weights does, and a qint8 runner that reads its forms back never adds it.
    from extractkit import _gemma3, _lora
    from extractkit._gemma import GemmaRunner
    from extractkit._model import load_weights

    adapter = random_lora(tmp_path / "adapter", _gemma3.load(tiny_dir))
    eager = load_weights(tiny_dir, adapter=adapter, light=True)
    deferred = load_weights(tiny_dir, adapter=adapter, light=True, defer_adapter=True)
    base = _gemma3.load(tiny_dir)
    assert eager.pending_lora is None and len(deferred.pending_lora) == 4 * 2 + 3 * 2  # 7 projections, 2 layers
    assert all(torch.equal(p, q) for p, q in zip(deferred.parameters(), base.parameters()))
    calibration, prompt = list(range(3, 40)), torch.tensor([[2, 40, 41, 42, 43, 44, 45, 46]])

    def hidden(model, numerics: str, own: bool) -> torch.Tensor:
        runner = GemmaRunner(model, numerics=numerics, own_weights=own)
        runner.calibrate(calibration)
        return runner.forward(runner.new_cache(1, 16), slice(0, 1), prompt, torch.tensor([0]))

    def load() -> torch.nn.Module:
        return load_weights(tiny_dir, adapter=adapter, light=True, defer_adapter=True)

    for numerics in ("fp32", "bf16"):
        assert torch.equal(hidden(load(), numerics, True), hidden(eager, numerics, False)), numerics
    reference = hidden(load_weights(tiny_dir, adapter=adapter, light=True), "qint8", True)
    assert not torch.equal(reference, hidden(_gemma3.load(tiny_dir), "qint8", True))  # the LoRA matters
    merges, merge = [], _lora.merge_pending
    monkeypatch.setattr(_lora, "merge_pending", lambda m: merges.append(bool(m.pending_lora)) or merge(m))
    model = load()
    assert torch.equal(hidden(model, "qint8", True), reference)  # forms read back: the LoRA never added
    assert model.pending_lora is None and not any(merges)
    (remember / "layers").rename(remember / "forgotten")
    assert torch.equal(hidden(load(), "qint8", True), reference)  # forms built: from the merged weights
    assert any(merges)
    merges.clear()
    assert torch.equal(hidden(load(), "qint8", False), reference)  # the model stays usable: merged at once
    assert merges[0]
