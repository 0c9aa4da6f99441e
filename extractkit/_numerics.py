"""The layer kernels the runner's projections use, and choosing among them per machine.

A decoder layer's seven projections are nearly all of a decode step's layer
work. They run in one of four numerics: fp32 (exact against transformers'
forward, with a decode-size orientation, `fp32_linear`), bf16 copies, weight-only
int8 (`_int8.py`) or int8 x int8 (`_qint8.py`, fbgemm). Everything else of the
layer stays fp32 in `_gemma.py`. "auto" is measured here once per machine.
Before any of it, `steady_math` makes MKL's elementwise functions reproducible.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

from . import _int8, _qint8


# The decoder layers' matmuls; norms, attention and the residual stay fp32. "auto" picks among
# fp32, bf16 and qint8 (int8 x int8, fbgemm) by timing: the two low-precision ones passed the
# SROIE-dev accuracy gate (docs/performance.md). "int8" (weight-only, per-row scales) is opt-in.
NUMERICS = ("auto", "fp32", "bf16", "int8", "qint8")


# The elementwise functions torch hands to MKL's VML (ATen/cpu/vml.h, `IMPLEMENT_VML_MKL`).
_VML = ("acos", "asin", "atan", "cos", "erf", "erfc", "erfinv", "exp", "log", "log10", "log2",
        "sin", "sqrt", "tan", "tanh", "trunc")


@functools.cache
def steady_math() -> None:
    """Call each of torch's MKL VML functions once, on one thread, before anything else does.

    On the 2-core AMX Xeon, the first *multi-threaded* VML call of a process after
    an MKL matmul computed one thread's chunk with a less accurate method: the
    first rotary `cos` table came back up to 1.5e-4 off in half its rows, in 2 to
    5 of 30 fresh processes (`tests/test_numerics.py`'s script), and in the
    engine's first forward pass in fp32, bf16 and qint8 alike. A greedy pick near
    a tie then flips, so a document can read differently in two processes (CI
    once saw a resumed ETL job's rows differ from a clean run's). A first call on a few values stays on one
    thread (ATen splits VML work from 2,048 values up) and settles whatever MKL
    picks lazily: the threaded `cos` after it was then exact in 60 of 60. Costs
    ~0.1 ms, once per process; `load_weights` and the backend call it.
    """
    for dtype in (torch.float32, torch.float64):
        x = torch.full((8,), 0.5, dtype=dtype)
        for name in _VML:
            getattr(torch, name)(x)


def choose_numerics(device: torch.device, shapes: tuple[tuple[int, int], ...] = ((2048, 640),)) -> str:
    """The fastest of fp32, bf16 and qint8 on this machine for one layer's projections.

    Measured, not guessed from CPU flags: bf16 is ~4x faster with avx512_bf16
    or AMX and slower than fp32 on CPUs that emulate it; fbgemm's int8 x int8
    is x86-only and pays on AVX2. `shapes` are the layer's weights [out, in]
    as the runner calls them; each kernel runs them at 1 and 16 rows (one
    document, a batch) and must beat fp32 by 20 % to be taken, since either
    can change an output where two tokens nearly tie. The test weights fit in
    the CPU's caches, which flatters fp32 at one row (memory-bound there: a
    real layer's fp32 weights are ~3x qint8's bytes), so the choice errs
    towards fp32. Costs ~0.2 s, once.
    """
    import time

    # Each kernel as the runner calls it (`_linear`'s three paths), output conversions included.
    modules = [torch.nn.Linear(n_in, n_out, bias=False, device=device).requires_grad_(False)
               for n_out, n_in in shapes]
    inputs = [[torch.randn(n, m.in_features, device=device) for n in (1, 16)] for m in modules]
    kernels = {"fp32": [lambda x, m=m: fp32_linear(m, x) for m in modules],
               "bf16": [lambda x, b=m.weight.bfloat16(): F.linear(x.to(torch.bfloat16), b).float()
                        for m in modules]}
    if _qint8.available(device):
        try:
            kernels["qint8"] = [_qint8.QLinear(m.weight, _qint8.fp32_dims(xs[1])) for m, xs in zip(modules, inputs)]
        except RuntimeError:  # a torch without the quantized types (deprecated in 2.13): not a choice
            pass

    def one_round(layer: list) -> None:
        for kernel, xs in zip(layer, inputs):
            for x in xs:
                kernel(x)

    # Each kernel's fastest of 10 rounds, the kernels taking turns within a round: a round that
    # another process preempts costs that round only, so a busy machine (a Ray worker beside
    # others) does not flip the choice - a sum over rounds did, 1 time in 4 on the tiny model.
    timings = {name: float("inf") for name in kernels}
    for round_ in range(11):  # round 0 warms up: packing, allocator, first-call dispatch
        for name, layer in kernels.items():
            start = time.perf_counter()
            one_round(layer)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if round_:
                timings[name] = min(timings[name], time.perf_counter() - start)
    best = min(timings, key=timings.get)
    return best if timings[best] < 0.8 * timings["fp32"] else "fp32"


def layer_groups(layer: Any) -> tuple[tuple[Any, ...], ...]:
    """A decoder layer's projections as qint8 runs them, those sharing an input together:
    q+k+v, o, gate+up, down (`GemmaRunner._linears` / `_linear`)."""
    a, m = layer.self_attn, layer.mlp
    return (a.q_proj, a.k_proj, a.v_proj), (a.o_proj,), (m.gate_proj, m.up_proj), (m.down_proj,)


def layer_shapes(layer: Any) -> tuple[tuple[int, int], ...]:
    """`layer_groups`' stacked weights [out, in]: what `choose_numerics` times."""
    return tuple((sum(p.out_features for p in group), group[0].in_features) for group in layer_groups(layer))


# Up to this many positions, `fp32_linear` computes W @ x^T instead of x @ W^T.
TALL = 256


def fp32_linear(module: Any, x: torch.Tensor) -> torch.Tensor:
    """module(x), computed as W @ x^T when x has few positions: the same products, faster.

    With 2-32 positions (a decode step: one token per row plus drafts) MKL's
    x @ W^T runs about one weight pass per position - 2 positions cost 2x one -
    while W @ x^T reads each weight once: an 18-layer step at 4 positions
    measured 81 -> 33 ms on a 2-core AVX2 CPU. The sums are blocked differently,
    so values can differ in the last bits - as they do between batch sizes in
    any kernel; greedy picks are checked against generate() (tests, bench/).
    From ~64 positions on the two are within noise of each other, and prefill
    (hundreds) keeps the module (`python bench/bench_projections.py --runner`).
    """
    flat = x.reshape(-1, x.shape[-1])
    if flat.shape[0] > TALL:
        return module(x)
    out = torch.mm(module.weight, flat.t()).t().contiguous().view(*x.shape[:-1], -1)
    return out if module.bias is None else out + module.bias


def low_precision(weight: torch.Tensor, numerics: str) -> tuple[torch.Tensor, ...]:
    """(bf16 weight,) or (int8 weight, bf16 scale per row) for `_linear`."""
    return (weight.to(torch.bfloat16),) if numerics == "bf16" else _int8.quantize(weight)
