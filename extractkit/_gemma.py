"""The fast engine's model runner: Gemma 3's forward pass over a row-slotted KV cache.

transformers' `generate()` keeps one cache per call and pads every sequence of
a batch to the same length. The engine (`_engine.py`) needs more: a sequence
may join a running batch, leave it, reuse a prefilled prompt prefix, and feed
several tokens in one pass (fast-forward). So it owns the cache (`_kvcache.py`:
a row per sequence, each with its own length, rings for the sliding-window
layers) and runs the decoder layers itself with the modules' weights and norms
(`_gemma3.py`'s, or transformers' when they loaded the model), so only the
attention bookkeeping is new code; the projections' kernels are `_numerics.py`'s.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.nn.functional as F

from . import _int8, _lora, _machine, _qint8
from ._gemma3 import apply_rotary_pos_emb
from ._kvcache import KVCache, attention_views
from ._numerics import NUMERICS, choose_numerics, fp32_linear, layer_groups, layer_shapes, low_precision
from ._pages import FileRows, release, trim


def supports(hf_model: Any) -> bool:
    """True for the architecture this runner implements (Gemma 3 text)."""
    return getattr(hf_model.config, "model_type", "") in ("gemma3_text", "gemma3")


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
            device, shapes = self.head.device, layer_shapes(self.body.layers[0])
            numerics = _machine.choice(f"numerics {device.type} {shapes}", lambda: choose_numerics(device, shapes))
        if numerics == "qint8" and not _qint8.available(self.head.device):
            raise RuntimeError("numerics='qint8' needs torch's fbgemm backend on an x86 CPU")
        if not (numerics == "qint8" and own_weights):
            _lora.merge_pending(hf_model)  # these read the fp32 projections (qint8 may restore forms instead)
        self.numerics = numerics
        self._low: dict[int, tuple[torch.Tensor, ...]] = {}  # id(Linear) -> (bf16 weight,) or (int8, scales)
        self._q: dict[int, _qint8.QLinear] = {}  # qint8: id(first Linear) -> the int8 x int8 form, built at first call
        self._remember = ""  # qint8: what names the weights and calibration prompt (`calibrate`), if anything
        self._own = own_weights
        if numerics in ("bf16", "int8"):
            for module in self.body.modules():
                if isinstance(module, torch.nn.Linear):
                    self._low[id(module)] = low_precision(module.weight.detach(), numerics)
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
            return fp32_linear(module, x)
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
            # Built at the first call (the engine's calibration prompt, `calibrate`): its fp32
            # dims are the inputs' largest on average there - the outlier channels tokens share.
            q = self._adopt(modules, self._quantized(modules, _qint8.fp32_dims(flat)))
        out = q(flat).view(*x.shape[:-1], -1)
        parts = out.split([m.out_features for m in modules], dim=-1)
        return tuple(p if m.bias is None else p + m.bias for p, m in zip(parts, modules))

    def calibrate(self, ids: list[int]) -> None:
        """Fix qint8's fp32 dims on a prompt of the caller's choosing, before any other input.

        They are read off the first hidden states each projection sees; without this, that
        is whatever is decoded first. Where the model names the files its weights came from
        (`_gemma3`'s `source`), the int8 forms of all layers are remembered as one file under
        those files and this prompt (`_machine.py`; the 4 most recently used, since every
        fine-tuned adapter is new weights and ~110 MB of forms), and a later process reads them
        back instead of quantizing (~0.5 s) and running the prompt. No-op for other numerics,
        or once calibrated.
        """
        if self.numerics != "qint8" or self._q:
            return

        def run() -> GemmaRunner:  # each projection builds its form at its first call (`_qlinear`)
            self.forward(self.new_cache(1, len(ids)), slice(0, 1), torch.tensor([ids], device=self.device),
                         torch.zeros(1, dtype=torch.long, device=self.device))
            return self

        source = getattr(self.hf, "source", "")
        if not source:
            run()
            return
        self._remember = f"calibrated on {hashlib.sha256(repr(ids).encode()).hexdigest()[:16]} of {source}"
        groups = [g for layer in self.body.layers[: self.config.num_hidden_layers] for g in layer_groups(layer)]

        def restore(saved: dict) -> GemmaRunner:
            for group, part in zip(groups, _qint8.QLinear.parts(saved, len(groups))):
                self._adopt(group, _qint8.QLinear.restore(part))
            _lora.drop_pending(self.hf)  # forms of the merged weights: the fp32 ones are released unmerged
            return self

        def fits(saved: dict) -> bool:
            parts = _qint8.QLinear.parts(saved, len(groups))
            return all("dims" in part and self._fits(part, g) for part, g in zip(parts, groups))

        _machine.remembered(f"qint8 layers {self._remember}", run,
                            lambda _: _qint8.QLinear.states([self._q[id(g[0])] for g in groups]),
                            restore, fits, group="layers", keep=4)

    @staticmethod
    def _fits(state: dict, modules: tuple[Any, ...]) -> bool:
        """A saved form has these projections' shapes."""
        rows = sum(m.out_features for m in modules)
        return state["fp32"].shape == (len(state["dims"]), rows) and state["int8.0"].shape[1] == modules[0].in_features

    def _quantized(self, modules: tuple[Any, ...], dims: torch.Tensor) -> _qint8.QLinear:
        """`modules`' weights, stacked, as a `QLinear` with `dims` in fp32."""
        _lora.merge_pending(self.hf)  # a pending LoRA is added before any weight is read
        weights = [m.weight.detach() for m in modules]
        weight = torch.cat(weights) if len(weights) > 1 else weights[0]  # one: its own pages, no copy
        return _qint8.QLinear(weight, dims)

    def _adopt(self, modules: tuple[Any, ...], q: _qint8.QLinear) -> _qint8.QLinear:
        self._q[id(modules[0])] = q
        if self._own:  # nobody else runs this model: the fp32 weights can go
            for m in modules:
                old = m.weight.data
                m.weight = torch.nn.Parameter(old.new_empty(0), requires_grad=False)
                release(old)
            if len(self._q) == 4 * self.config.num_hidden_layers:  # every `layer_groups` group built
                trim()
        return q

    @property
    def device(self) -> torch.device:
        return self.head.device

    def new_cache(self, rows: int, length: int, limit: int | None = None) -> KVCache:
        c = self.config
        return KVCache(c.num_hidden_layers, rows, length, c.num_key_value_heads, c.head_dim,
                       self.head.dtype, self.device, limit,
                       sliding=[kind == "sliding_attention" for kind in self.layer_types], window=self.window)

    def prefilled(self, ids: list[int]) -> KVCache:
        """A one-row cache holding `ids`' keys and values (a schema's shared prompt prefix).

        Computing them is ~0.5 s of a 2-core first result, so where the weights name their
        files they are remembered (`_machine`) per weights, numerics (qint8: its calibration),
        machine and ids, the 16 most recently used: the same values this process would compute.
        """
        cache = self.new_cache(1, len(ids))

        def build() -> KVCache:
            self.forward(cache, slice(0, 1), torch.tensor([ids], device=self.device),
                         torch.zeros(1, dtype=torch.long, device=self.device))
            return cache

        weights = self._remember or getattr(self.hf, "source", "")
        if not weights or self.device.type != "cpu" or (self.numerics == "qint8" and not self._remember):
            return build()

        def fits(saved: dict) -> bool:
            return all(saved[f"{kv}.{i}"].shape == t.shape and saved[f"{kv}.{i}"].dtype == t.dtype
                       for kv, ts in (("k", cache.k), ("v", cache.v)) for i, t in enumerate(ts))

        def restore(saved: dict) -> KVCache:
            for i in range(len(cache.k)):
                cache.k[i].copy_(saved[f"k.{i}"])
                cache.v[i].copy_(saved[f"v.{i}"])
            return cache

        key = (f"prefix {hashlib.sha256(repr(ids).encode()).hexdigest()[:16]} ({len(ids)} ids), "
               f"{self.numerics} of {weights}, on {_machine.fingerprint()}")
        return _machine.remembered(key, build, lambda c: {**{f"k.{i}": t for i, t in enumerate(c.k)},
                                                          **{f"v.{i}": t for i, t in enumerate(c.v)}},
                                   restore, fits, group="prefixes", keep=16)

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


def _padded(x: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    """[1, real positions, n] back to [B, K, n], zeros at the padding (whose keys nothing reads)."""
    if real is None:
        return x
    out = x.new_zeros((*real.shape, x.shape[-1]))
    out[real] = x[0]
    return out


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
