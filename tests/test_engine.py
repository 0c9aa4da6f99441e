"""The fast engine (`_engine.py`, `_gemma.py`) against the reference `generate()` path, tiny model.

Exactness is the contract: greedy decoding under the grammar must give the
same text whatever the engine does to get there (continuous batching, the
prefix cache, fast-forward drafts, the mask-aware head).
"""

from __future__ import annotations

import pytest
import torch

from extractkit import ExtractConfig, Extractor
from extractkit._engine import FastDecoder
from extractkit._errors import UsageError
from extractkit._schema import load_schema
from extractkit._transformers import TransformersBackend

TEXTS = [
    "Invoice INV-001 issued 5 March 2024 to Jane Doe, total due USD 1,234.56 by 2024-04-01.",
    "TOTAL: 9.00 CASH 10.00 CHANGE 1.00 THANK YOU PLEASE COME AGAIN",
    "ACME SDN BHD tea 2 x 3.00 " * 6,
    "hello",
    "\n\nstarts with newlines, so its tokens may merge with the prompt's",
    "null true false 0123456789",
    "Extract the fields described by the schema from the text " * 3,
]


def _raw(model, tokenizer, decoder, schema, texts, batch_size, max_new_tokens=48, engine="llguidance", fast=None):
    # numerics="fp32": the exact setting ("auto" may pick bf16 matmuls, which can flip a near-tie).
    backend = TransformersBackend(model, tokenizer, decoder=decoder, engine=engine, numerics="fp32")
    backend._fast = fast
    extractor = Extractor(backend, ExtractConfig(max_new_tokens=max_new_tokens, batch_size=batch_size))
    return [(r.raw, r.tokens, r.error is None) for r in extractor.extract_many(texts, load_schema(schema))]


@pytest.mark.parametrize("schema", ["receipt", "invoice", "contact", "event"])
def test_fast_engine_returns_what_generate_returns(tiny_parts, schema):
    # 7 texts at batch size 3: rows finish, leave, and waiting prompts join mid-run.
    model, tokenizer = tiny_parts
    reference = [_raw(model, tokenizer, "generate", schema, [t], 1)[0] for t in TEXTS]
    assert _raw(model, tokenizer, "fast", schema, TEXTS, 3) == reference
    assert _raw(model, tokenizer, "fast", schema, TEXTS, 1) == reference


@pytest.mark.parametrize("engine", ["outlines_core", "xgrammar"])
def test_fast_engine_is_exact_without_drafts(tiny_parts, engine):
    # These engines propose no fast-forward tokens: only batching, prefix and head remain.
    model, tokenizer = tiny_parts
    reference = [_raw(model, tokenizer, "generate", "receipt", [t], 1, engine=engine)[0] for t in TEXTS[:4]]
    assert _raw(model, tokenizer, "fast", "receipt", TEXTS[:4], 2, engine=engine) == reference


@pytest.mark.parametrize("screen", ["qint8", "int8", "bf16"])
def test_screened_head_is_exact(tiny_parts, screen):
    # The tiny vocabulary is below the head's gather limit; lower it so open-ended rows take
    # the screen + fp32 rescoring route (too few tokens for its timing test to matter).
    model, tokenizer = tiny_parts
    fast = FastDecoder(model, tokenizer, numerics="fp32", screen=screen, small=4)
    reference = [_raw(model, tokenizer, "generate", "receipt", [t], 1)[0] for t in TEXTS]
    assert _raw(model, tokenizer, "fast", "receipt", TEXTS, 3, fast=fast) == reference
    assert fast.head.stats["near"] + fast.head.stats["screened"] > 0


@pytest.mark.parametrize("numerics", ["bf16", "int8", "qint8"])
def test_low_precision_numerics_decode_valid_objects(tiny_parts, numerics):
    # Opt-in and not exact: their accuracy deltas are measured on SROIE dev (docs/performance.md).
    model, tokenizer = tiny_parts
    fast = FastDecoder(model, tokenizer, numerics=numerics)
    got = _raw(model, tokenizer, "fast", "receipt", TEXTS, 3, max_new_tokens=256, fast=fast)
    assert fast.runner.numerics == numerics and len(got) == len(TEXTS)
    assert FastDecoder(model, tokenizer).runner.numerics in ("fp32", "bf16", "qint8")  # "auto": measured, then fixed
    with pytest.raises(UsageError):
        TransformersBackend(model, tokenizer, numerics="int3")


def test_auto_numerics_picks_only_gated_kernels(monkeypatch):
    # "auto" chooses among the kernels that passed the accuracy gate: never weight-only int8, and
    # qint8 only where fbgemm runs (x86).
    from extractkit import _numerics, _qint8

    assert _numerics.choose_numerics(torch.device("cpu")) in ("fp32", "bf16", "qint8")
    monkeypatch.setattr(_qint8, "available", lambda device: False)
    assert _numerics.choose_numerics(torch.device("cpu")) in ("fp32", "bf16")

    def gone(*args, **kwargs):  # a torch whose quantized types were removed
        raise RuntimeError("quantize_per_channel is not available")

    monkeypatch.setattr(_qint8, "available", lambda device: True)
    monkeypatch.setattr(_qint8, "QLinear", gone)
    assert _numerics.choose_numerics(torch.device("cpu")) in ("fp32", "bf16")


@pytest.mark.parametrize("numerics", ["int8", "qint8"])
def test_int8_layers_stay_close_to_fp32(tiny_parts, numerics):
    # int8 weights with a scale per row (qint8: and int8 activations with a scale per token, the
    # largest input dims in fp32): each projection within int8 rounding of fp32.
    from extractkit._gemma import GemmaRunner

    model, _ = tiny_parts
    runner = GemmaRunner(model, numerics=numerics)
    linear = model.model.layers[0].mlp.gate_proj
    x = torch.randn(5, 2, linear.in_features, generator=torch.Generator().manual_seed(3))
    x[..., 7] *= 30  # an outlier channel, as Gemma's hidden states have
    exact, got = linear(x), runner._linear(linear, x)
    assert got.shape == exact.shape and not torch.equal(got, exact)
    assert (got - exact).abs().max() < 0.02 * exact.abs().max()
    if numerics == "qint8":
        assert 7 in runner._q[id(linear)].dims.tolist()  # chosen from the first call's inputs


def test_qint8_outputs_do_not_depend_on_what_was_extracted_first(tiny_parts):
    # qint8's fp32 dims are fixed on the engine's calibration prompt, not on the first schema's prefix.
    model, tokenizer = tiny_parts
    alone = FastDecoder(model, tokenizer, numerics="qint8")
    after = FastDecoder(model, tokenizer, numerics="qint8")
    dims = {key: q.dims.tolist() for key, q in alone.runner._q.items()}
    assert dims and dims == {key: q.dims.tolist() for key, q in after.runner._q.items()}
    _raw(model, tokenizer, "fast", "contact", TEXTS[:2], 2, fast=after)
    assert (_raw(model, tokenizer, "fast", "invoice", TEXTS[:3], 2, fast=after)
            == _raw(model, tokenizer, "fast", "invoice", TEXTS[:3], 2, fast=alone))
    assert dims == {key: q.dims.tolist() for key, q in after.runner._q.items()}


@pytest.mark.parametrize("numerics", ["bf16", "int8", "qint8"])
def test_owned_low_precision_weights_replace_fp32_and_decode_the_same(tiny_parts, numerics):
    # A backend that loaded its model keeps only the low-precision layer weights; same outputs as keeping both.
    import copy

    model, tokenizer = tiny_parts
    shared = _raw(model, tokenizer, "fast", "receipt", TEXTS, 3,
                  fast=FastDecoder(model, tokenizer, numerics=numerics))
    owned_model = copy.deepcopy(model)
    owned = FastDecoder(owned_model, tokenizer, numerics=numerics, own_weights=True)
    assert _raw(owned_model, tokenizer, "fast", "receipt", TEXTS, 3, fast=owned) == shared
    linear = owned_model.model.layers[0].mlp.down_proj
    if numerics == "qint8":  # fbgemm holds its own packed copy: the fp32 weight is gone
        assert linear.weight.numel() == 0
    else:
        assert linear.weight.dtype == (torch.bfloat16 if numerics == "bf16" else torch.int8)
    assert model.model.layers[0].mlp.down_proj.weight.dtype == torch.float32


def test_budget_is_counted_like_generate(tiny_parts):
    # A budget too small for any object: both paths stop at the same token, unfinished.
    model, tokenizer = tiny_parts
    for budget in (1, 2, 7):
        fast = _raw(model, tokenizer, "fast", "invoice", TEXTS[:3], 2, max_new_tokens=budget)
        ref = [_raw(model, tokenizer, "generate", "invoice", [t], 1, max_new_tokens=budget)[0] for t in TEXTS[:3]]
        assert fast == ref
        assert all(tokens == budget and not ok for _, tokens, ok in fast)


@pytest.mark.parametrize("limit", [None, 400])
def test_runner_matches_the_hf_forward_past_the_sliding_window(tiny_parts, limit):
    # The tiny model's window is 64: 150 positions, fed in uneven pieces and rows. With a
    # limit past window + RING_ROOM the sliding layer is a ring (prefill gathered, narrow
    # passes in place); without one every layer is position-indexed.
    from extractkit._gemma import GemmaRunner

    model, _ = tiny_parts
    ids = torch.randint(4, model.config.vocab_size, (2, 150), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference = model.model(input_ids=ids).last_hidden_state
        runner = GemmaRunner(model)
        cache = runner.new_cache(2, 16, limit=limit)  # grows as it goes
        assert (cache.ring[0] is not None) == (limit is not None) and cache.ring[1] is None
        parts = [runner.forward(cache, slice(0, 2), ids[:, :100], torch.tensor([0, 0])),
                 runner.forward(cache, slice(0, 2), ids[:, 100:101], torch.tensor([100, 100])),
                 runner.forward(cache, slice(0, 2), ids[:, 101:104], torch.tensor([101, 101]))]
        tail = runner.forward(cache, slice(1, 2), ids[1:, 104:], torch.tensor([104]))
        # Row 0 one and two tokens at a time, round the ring more than once.
        steps, p = [], 104
        while p < 150:
            steps.append((p, runner.forward(cache, slice(0, 1), ids[:1, p:p + 1 + p % 2], torch.tensor([p]))))
            p += steps[-1][1].shape[1]
    assert torch.allclose(torch.cat(parts, dim=1), reference[:, :104], atol=1e-4)
    assert torch.allclose(tail, reference[1:, 104:], atol=1e-4)
    for p, got in steps:
        assert torch.allclose(got, reference[:1, p:p + got.shape[1]], atol=1e-4)


def test_runner_skips_padding_without_changing_real_positions(tiny_parts):
    # Rows of a fast-forward step are padded to the longest feed; with `lengths` the
    # projections and MLP run on the real positions only.
    from extractkit._gemma import GemmaRunner

    model, _ = tiny_parts
    ids = torch.randint(4, model.config.vocab_size, (3, 90), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        reference = model.model(input_ids=ids).last_hidden_state
        runner = GemmaRunner(model)
        cache = runner.new_cache(3, 90, limit=400)
        runner.forward(cache, slice(0, 3), ids[:, :80], torch.tensor([0, 0, 0]))
        padded = ids[:, 80:84].clone()
        padded[1, 1:] = padded[2, 2:] = 1  # rows 1 and 2 feed 1 and 2 real tokens
        got = runner.forward(cache, slice(0, 3), padded, torch.tensor([80, 80, 80]), [4, 1, 2])
    for row, n in enumerate([4, 1, 2]):
        assert torch.allclose(got[row, :n], reference[row, 80:80 + n], atol=1e-4)


@pytest.mark.parametrize("positions", [1, 2, 5, 33, 300])
@pytest.mark.parametrize("bias", [False, True])
def test_fp32_projection_matches_the_module(positions, bias):
    # Decode-sized inputs go through W @ x^T (MKL's x @ W^T costs a weight pass per
    # position there): same values up to summation order; prefill-sized ones are the module.
    from extractkit._numerics import TALL, fp32_linear

    torch.manual_seed(positions)
    module = torch.nn.Linear(640, 384, bias=bias)
    x = torch.randn(1, positions, 640)
    with torch.inference_mode():
        got, want = fp32_linear(module, x), module(x)
    assert got.shape == want.shape and got.is_contiguous()
    assert torch.allclose(got, want, rtol=0, atol=1e-5)
    if positions > TALL:
        assert torch.equal(got, want)


def test_unknown_decoder_is_a_usage_error(tiny_parts):
    from extractkit import UsageError

    with pytest.raises(UsageError, match="decoder"):
        TransformersBackend(*tiny_parts, decoder="turbo")


def test_cache_keep_compacts_rows_in_place():
    # Finished rows leave the batch: the kept rows move to the front of the same storage.
    from extractkit._kvcache import KVCache

    cache = KVCache(2, 4, 3, 1, 2, torch.float32, torch.device("cpu"))
    for t in cache.k + cache.v:
        t.copy_(torch.arange(4.0)[:, None, None, None].expand_as(t))
    storage = cache.k[0].data_ptr()
    cache.keep([1, 3])
    assert cache.rows == 2 and cache.k[0].data_ptr() == storage
    assert all(t[:, 0, 0, 0].tolist() == [1.0, 3.0] for t in cache.k + cache.v)
    with pytest.raises(ValueError, match="ascending"):
        cache.keep([1, 0])
