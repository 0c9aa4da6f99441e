"""The fast engine's model runner: Gemma 3's forward pass over a row-slotted KV cache.

transformers' `generate()` keeps one cache per call and pads every sequence of
a batch to the same length. The engine (`_engine.py`) needs more: a sequence
may join a running batch, leave it, reuse a prefilled prompt prefix, and feed
several tokens in one pass (fast-forward). So it owns the cache (`_kvcache.py`:
a row per sequence, each with its own length, rings for the sliding-window
layers) and runs the decoder layers itself with the Hugging Face modules'
weights and norms, so only the attention bookkeeping is new code (and the
projections' kernel orientation at decode sizes, `_fp32_linear`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from . import _int8, _machine, _qint8
from ._gemma3 import apply_rotary_pos_emb
from ._kvcache import KVCache, attention_views
from ._pages import FileRows, release, trim


def supports(hf_model: Any) -> bool:
    """True for the architecture this runner implements (Gemma 3 text)."""
    return getattr(hf_model.config, "model_type", "") in ("gemma3_text", "gemma3")


# The decoder layers' matmuls; norms, attention and the residual stay fp32. "auto" picks among
# fp32, bf16 and qint8 (int8 x int8, fbgemm) by timing: the two low-precision ones passed the
# SROIE-dev accuracy gate (docs/performance.md). "int8" (weight-only, per-row scales) is opt-in.
NUMERICS = ("auto", "fp32", "bf16", "int8", "qint8")


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
    kernels = {"fp32": [lambda x, m=m: _fp32_linear(m, x) for m in modules],
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


def _shapes(layer: Any) -> tuple[tuple[int, int], ...]:
    """A decoder layer's projections [out, in] as `_linears` calls them in qint8 (q+k+v, o, gate+up, down)."""
    a, m = layer.self_attn, layer.mlp
    return ((a.q_proj.out_features + a.k_proj.out_features + a.v_proj.out_features, a.q_proj.in_features),
            (a.o_proj.out_features, a.o_proj.in_features),
            (m.gate_proj.out_features + m.up_proj.out_features, m.gate_proj.in_features),
            (m.down_proj.out_features, m.down_proj.in_features))


class GemmaRunner:
    """Runs a loaded `Gemma3ForCausalLM` (eval mode) against a `KVCache`.

    numerics="bf16" runs the seven projections of every layer as bf16 matmuls
    (about 4x faster than fp32 on avx512_bf16 CPUs at decode batch sizes)
    from bf16 copies of their weights; numerics="int8" runs them from int8
    copies with a bf16 scale per output row (`torch._weight_int8pack_mm`, bf16
    activations, fp32 sums: a quarter of fp32's bytes, which pays where decoding
    is bound by memory - one document at a time on a CPU without bf16);
    numerics="qint8" multiplies int8 weights by int8 activations with integer
    sums (fbgemm, x86), each token's activations with their own scale and the
    16 largest input dims of the first call in fp32 (`_qint8.QLinear`), which
    is also fast at batch sizes where the weight-only kernel is compute-bound;
    projections that share an input (q, k, v; gate, up) are one fbgemm call.
    Everything between the projections stays fp32. All three can change an
    output where two tokens nearly tie, so "fp32" is the one that is exact
    against generate(); "auto" takes bf16 or qint8 where it measures faster
    (their accuracy deltas on SROIE dev: docs/performance.md); int8 is opt-in. A model loaded in
    another dtype runs as loaded. `own_weights=True` (the backend loaded the
    model and nothing else runs it) replaces the fp32 layer weights by the
    low-precision ones instead of keeping both.
    """

    def __init__(self, hf_model: Any, numerics: str = "fp32", own_weights: bool = False):
        if numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {NUMERICS}, not {numerics!r}")
        self.hf = hf_model
        self.config = hf_model.config
        self.body = hf_model.model
        self.head = hf_model.get_output_embeddings().weight  # [vocab, hidden], tied to the embedding
        # The embedding's rows for the tokens fed, read from the checkpoint file where it is a
        # file mapping (the same reason as the head's rescored rows: `_pages.FileRows`).
        self._embedding_rows = FileRows.of(self.body.embed_tokens.weight)
        self.window = self.config.sliding_window
        self.layer_types = list(self.config.layer_types)
        if self.head.dtype != torch.float32:
            numerics = "fp32"  # "fp32" means: the modules as loaded
        elif numerics == "auto":  # measured once per machine, then remembered (`_machine.py`)
            device, shapes = self.head.device, _shapes(self.body.layers[0])
            numerics = _machine.choice(f"numerics {device.type} {shapes}", lambda: choose_numerics(device, shapes))
        if numerics == "qint8" and not _qint8.available(self.head.device):
            raise RuntimeError("numerics='qint8' needs torch's fbgemm backend on an x86 CPU")
        self.numerics = numerics
        self._low: dict[int, tuple[torch.Tensor, ...]] = {}  # id(Linear) -> (bf16 weight,) or (int8, scales)
        self._q: dict[int, _qint8.QLinear] = {}  # qint8: id(first Linear) -> the int8 x int8 form, built at first call
        self._own = own_weights
        if numerics in ("bf16", "int8"):
            for module in self.body.modules():
                if isinstance(module, torch.nn.Linear):
                    self._low[id(module)] = _low_precision(module.weight.detach(), numerics)
                    if own_weights:
                        # Nobody else runs this model: keep only the low-precision weights (a half
                        # or a quarter of the fp32 bytes), hand a memory-mapped original's pages back.
                        old = module.weight.data
                        module.weight = torch.nn.Parameter(self._low[id(module)][0], requires_grad=False)
                        release(old)
            if own_weights:
                trim()  # the freed fp32 weights' heap space back to the OS

    def _linear(self, module: Any, x: torch.Tensor) -> torch.Tensor:
        if self.numerics == "qint8":
            return self._qlinear((module,), x)[0]
        low = self._low.get(id(module))
        if low is None:
            return _fp32_linear(module, x)
        if len(low) == 1:
            out = F.linear(x.to(torch.bfloat16), low[0]).float()
        else:
            out = _int8.matmul(x, *low)
        return out if module.bias is None else out + module.bias

    def _linears(self, modules: tuple[Any, ...], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Projections that share their input x (q, k, v; gate, up): module(x) for each."""
        if self.numerics == "qint8":
            return self._qlinear(modules, x)
        return tuple(self._linear(module, x) for module in modules)

    def _qlinear(self, modules: tuple[Any, ...], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # One fbgemm call for all of `modules`: each call pays ~80 us of quantizing and scaling
        # whatever its size, more than k_proj's whole matmul one row at a time. The sums are the
        # same as one call each: the activations' scales are per token, the weights' per row.
        flat = x.reshape(-1, x.shape[-1])
        q = self._q.get(id(modules[0]))
        if q is None:
            # Built at the first call (the shared prefix's prefill): its fp32 dims are the inputs'
            # largest on average there - the few outlier channels every token shares.
            weights = [m.weight.detach() for m in modules]
            weight = torch.cat(weights) if len(weights) > 1 else weights[0]  # one: its own pages, no copy
            q = self._q[id(modules[0])] = _qint8.QLinear(weight, _qint8.fp32_dims(flat))
            if self._own:  # nobody else runs this model: the fp32 weights can go
                for m in modules:
                    old = m.weight.data
                    m.weight = torch.nn.Parameter(old.new_empty(0), requires_grad=False)
                    release(old)
                if len(self._q) == 4 * self.config.num_hidden_layers:  # q+k+v, o, gate+up, down
                    trim()
        out = q(flat).view(*x.shape[:-1], -1)
        parts = out.split([m.out_features for m in modules], dim=-1)
        return tuple(p if m.bias is None else p + m.bias for p, m in zip(parts, modules))

    @property
    def device(self) -> torch.device:
        return self.head.device

    def new_cache(self, rows: int, length: int, limit: int | None = None) -> KVCache:
        c = self.config
        return KVCache(c.num_hidden_layers, rows, length, c.num_key_value_heads, c.head_dim,
                       self.head.dtype, self.device, limit,
                       sliding=[kind == "sliding_attention" for kind in self.layer_types], window=self.window)

    def forward(self, cache: KVCache, rows: slice, tokens: torch.Tensor, start: torch.Tensor,
                lengths: list[int] | None = None) -> torch.Tensor:
        """Feed `tokens` [B, K] to cache rows `rows` at positions start[b] + 0..K-1.

        Writes their keys/values into the cache and returns the final hidden
        states [B, K, hidden] (the output head is the engine's business).
        Rows shorter than K are padded by the caller; a padded position's
        key lands past that row's real length, where nothing attends to it.
        With `lengths` (row b's real tokens), the padding skips the projections
        and the MLP - a fast-forward step pads every row to the longest draft,
        and those positions were a third of a batch-16 step's matmul work.
        """
        batch, width = tokens.shape
        device = tokens.device
        real = None
        if lengths is not None and min(lengths) < width:
            real = torch.arange(width, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]
        pos = start[:, None] + torch.arange(width, device=device)                 # [B, K]
        span = int(pos.max()) + 1
        cache.reserve(span)
        views = attention_views(cache, pos, start, span, self.window)
        # x is [B, K, hidden], or [1, real positions, hidden] when the padding is skipped.
        x = self._embed(tokens if real is None else tokens[real][None])
        rope = {kind: self.body.rotary_emb(x, pos, kind) for kind in set(self.layer_types)}
        row_ids = torch.arange(rows.start, rows.start + batch, device=device)
        for i, layer in enumerate(self.body.layers[: self.config.num_hidden_layers]):
            kind = self.layer_types[i]
            view = views["ring"] if cache.ring[i] is not None else views[kind]
            h = self._attention(layer, layer.input_layernorm(x), cache, i, row_ids, pos, rope[kind], view,
                                span, real)
            x = x + layer.post_attention_layernorm(h)
            h = self._mlp(layer.mlp, layer.pre_feedforward_layernorm(x))
            x = x + layer.post_feedforward_layernorm(h)
        return _padded(self.body.norm(x), real)

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """embed_tokens(tokens): the rows times Gemma's sqrt(hidden) scale, as its module computes it."""
        embed = self.body.embed_tokens
        if self._embedding_rows is None:
            return embed(tokens)
        rows = self._embedding_rows.gather(tokens.reshape(-1)).view(*tokens.shape, -1)
        return rows * embed.embed_scale.to(rows.dtype)

    def _mlp(self, mlp: Any, x: torch.Tensor) -> torch.Tensor:
        gate, up = self._linears((mlp.gate_proj, mlp.up_proj), x)
        return self._linear(mlp.down_proj, mlp.act_fn(gate) * up)

    def _attention(self, layer: Any, x: torch.Tensor, cache: KVCache, i: int, row_ids: torch.Tensor,
                   pos: torch.Tensor, rope: tuple, view: Any, span: int, real: torch.Tensor | None) -> torch.Tensor:
        attn = layer.self_attn
        batch, width = pos.shape
        shape = (batch, width, -1, attn.head_dim)
        q, k, v = (_padded(p, real).view(shape).transpose(1, 2)
                   for p in self._linears((attn.q_proj, attn.k_proj, attn.v_proj), x))
        q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = apply_rotary_pos_emb(q, k, *rope)
        keys, values, mask = view.attend(cache, i, row_ids, pos, k, v, span)
        out = _attend(q, keys, values, mask, attn.scaling).transpose(1, 2).reshape(batch, width, -1)
        return self._linear(attn.o_proj, out if real is None else out[real][None])


# Up to this many positions, `_fp32_linear` computes W @ x^T instead of x @ W^T.
_TALL = 256


def _fp32_linear(module: Any, x: torch.Tensor) -> torch.Tensor:
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
    if flat.shape[0] > _TALL:
        return module(x)
    out = torch.mm(module.weight, flat.t()).t().contiguous().view(*x.shape[:-1], -1)
    return out if module.bias is None else out + module.bias


def _padded(x: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    """[1, real positions, n] back to [B, K, n], zeros at the padding (whose keys nothing reads)."""
    if real is None:
        return x
    out = x.new_zeros((*real.shape, x.shape[-1]))
    out[real] = x[0]
    return out


def _low_precision(weight: torch.Tensor, numerics: str) -> tuple[torch.Tensor, ...]:
    """(bf16 weight,) or (int8 weight, bf16 scale per row) for `_linear`."""
    return (weight.to(torch.bfloat16),) if numerics == "bf16" else _int8.quantize(weight)


def _attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
            scale: float) -> torch.Tensor:
    """Attention of q [B, heads, K, D] over keys/values [B, kv_heads, S, D] (grouped heads).

    Prefill (many queries) goes to SDPA's flash kernel. A decode step has a
    handful of queries per row, where that kernel is ~2x slower than two plain
    matmuls: the query heads that share a key/value head are stacked into one
    matrix so each cached key is read once, not once per query head.
    """
    batch, heads, width, dim = q.shape
    groups = heads // keys.shape[1]
    if width > 8:
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale, enable_gqa=groups > 1)
    stacked = q.reshape(batch, keys.shape[1], groups * width, dim)      # row h*K + k: head h, query k
    scores = (stacked @ keys.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~mask.repeat(1, 1, groups, 1), float("-inf"))
    return (scores.softmax(-1) @ values).reshape(batch, heads, width, dim)
