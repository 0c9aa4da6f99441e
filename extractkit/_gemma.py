"""The fast engine's model runner: Gemma 3's forward pass over a row-slotted KV cache.

transformers' `generate()` keeps one cache per call and pads every sequence of
a batch to the same length. The engine (`_engine.py`) needs more: a sequence
may join a running batch, leave it, reuse a prefilled prompt prefix, and feed
several tokens in one pass (fast-forward). So it owns the cache - one tensor
pair per layer, a row per sequence, each row with its own length - and runs
the decoder layers itself, calling the Hugging Face modules for every
projection and norm (same weights, same kernels), so only the attention
bookkeeping below is new code.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.models.gemma3.modeling_gemma3 import apply_rotary_pos_emb

from ._pages import release, trim


def supports(hf_model: Any) -> bool:
    """True for the architecture this runner implements (Gemma 3 text)."""
    return getattr(hf_model.config, "model_type", "") in ("gemma3_text", "gemma3")


class KVCache:
    """Keys and values of `rows` sequences, `[rows, kv_heads, length, head_dim]` per layer.

    Row r holds positions 0..len-1 of its sequence; anything past a row's
    length is stale and never attended to (the causal mask stops at the
    query's own position), so rows can be reused without clearing them.
    """

    def __init__(self, layers: int, rows: int, length: int, kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device, limit: int | None = None):
        shape = (rows, kv_heads, length, head_dim)
        self.limit = limit  # growth stops here: no row can need more (the engine's prompt + budget)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]

    @property
    def rows(self) -> int:
        return self.k[0].shape[0]

    @property
    def length(self) -> int:
        return self.k[0].shape[2]

    def reserve(self, length: int) -> None:
        """Grow every row to hold `length` positions (doubling, so growth is rare, up to `limit`)."""
        if length <= self.length:
            return
        new = max(length, 2 * self.length)
        if self.limit is not None:
            new = max(length, min(new, self.limit))
        for cache in (self.k, self.v):
            for i, old in enumerate(cache):
                grown = old.new_zeros((old.shape[0], old.shape[1], new, old.shape[3]))
                grown[:, :, : old.shape[2]] = old
                cache[i] = grown
        # The old tensors (~15 MB a layer at batch 16) were freed into glibc's heap, where
        # the larger grown ones cannot reuse them: hand those pages back to the OS.
        trim()

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows` (ascending), moved to the front: finished sequences leave the batch.

        In place, row by row: copying the kept rows into new tensors would hold the
        old and the new cache at once, the peak of a batch's memory.
        """
        if rows != sorted(rows):
            raise ValueError("rows to keep must be ascending")
        for cache in (self.k, self.v):
            for i, tensor in enumerate(cache):
                for dst, src in enumerate(rows):
                    if dst != src:
                        tensor[dst] = tensor[src]
                cache[i] = tensor[: len(rows)]

    def copy_prefix(self, source: "KVCache", row: int, length: int) -> None:
        """Row `row` starts with the first `length` positions of `source`'s row 0."""
        for dst, src in ((self.k, source.k), (self.v, source.v)):
            for d, s in zip(dst, src):
                d[row, :, :length] = s[0, :, :length]


NUMERICS = ("auto", "fp32", "bf16")  # the decoder layers' matmuls; norms, attention and the residual stay fp32


def choose_numerics(device: torch.device) -> str:
    """bf16 where this machine runs a decode-sized bf16 matmul clearly faster than fp32, else fp32.

    Measured, not guessed from CPU flags: bf16 is ~4x faster with avx512_bf16
    or AMX and slower than fp32 on CPUs that emulate it. Costs ~50 ms, once.
    """
    import time

    x, w = torch.randn(16, 640, device=device), torch.randn(2048, 640, device=device)
    timings = []
    for a, b in ((x, w), (x.bfloat16(), w.bfloat16())):
        F.linear(a, b)
        start = time.perf_counter()
        for _ in range(10):
            F.linear(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    return "bf16" if timings[1] < 0.7 * timings[0] else "fp32"


class GemmaRunner:
    """Runs a loaded `Gemma3ForCausalLM` (eval mode) against a `KVCache`.

    numerics="bf16" runs the seven projections of every layer as bf16 matmuls
    (about 4x faster than fp32 on avx512_bf16 CPUs at decode batch sizes)
    from bf16 copies of their weights; everything between them stays fp32.
    It can change an output where two tokens nearly tie, so "fp32" is the one
    that is exact against generate(); "auto" takes bf16 where it measures
    faster (its accuracy delta on SROIE dev: docs/performance.md). A model
    loaded in another dtype runs as loaded. `own_weights=True` (the backend
    loaded the model and nothing else runs it) replaces the fp32 layer weights
    by the bf16 ones instead of keeping both.
    """

    def __init__(self, hf_model: Any, numerics: str = "fp32", own_weights: bool = False):
        if numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {NUMERICS}, not {numerics!r}")
        self.hf = hf_model
        self.config = hf_model.config
        self.body = hf_model.model
        self.head = hf_model.get_output_embeddings().weight  # [vocab, hidden], tied to the embedding
        self.window = self.config.sliding_window
        self.layer_types = list(self.config.layer_types)
        if self.head.dtype != torch.float32:
            numerics = "fp32"  # "fp32" means: the modules as loaded
        elif numerics == "auto":
            numerics = choose_numerics(self.head.device)
        self.numerics = numerics
        self._bf16: dict[int, torch.Tensor] = {}
        if numerics == "bf16":
            for module in self.body.modules():
                if isinstance(module, torch.nn.Linear):
                    self._bf16[id(module)] = module.weight.detach().to(torch.bfloat16)
                    if own_weights:
                        # Nobody else runs this model: keep only the bf16 weights (half of
                        # the fp32 bytes), hand a memory-mapped fp32 original's pages back.
                        old = module.weight.data
                        module.weight = torch.nn.Parameter(self._bf16[id(module)], requires_grad=False)
                        release(old)
            if own_weights:
                trim()  # the freed fp32 weights' heap space back to the OS

    def _linear(self, module: Any, x: torch.Tensor) -> torch.Tensor:
        weight = self._bf16.get(id(module))
        if weight is None:
            return module(x)
        return F.linear(x.to(torch.bfloat16), weight).float()

    @property
    def device(self) -> torch.device:
        return self.head.device

    def new_cache(self, rows: int, length: int, limit: int | None = None) -> KVCache:
        c = self.config
        return KVCache(c.num_hidden_layers, rows, length, c.num_key_value_heads, c.head_dim,
                       self.head.dtype, self.device, limit)

    def forward(self, cache: KVCache, rows: slice, tokens: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Feed `tokens` [B, K] to cache rows `rows` at positions start[b] + 0..K-1.

        Writes their keys/values into the cache and returns the final hidden
        states [B, K, hidden] (the output head is the engine's business).
        Rows shorter than K are padded by the caller; a padded position's
        key lands past that row's real length, where nothing attends to it.
        """
        batch, width = tokens.shape
        pos = start[:, None] + torch.arange(width, device=tokens.device)          # [B, K]
        span = int(pos.max()) + 1
        cache.reserve(span)
        key_pos = torch.arange(span, device=tokens.device)
        causal = key_pos[None, None, :] <= pos[:, :, None]                        # [B, K, span]
        # Sliding-window layers never look further back than `window` positions from the
        # earliest query, so they read only that tail of the cache: (first key, mask).
        low = max(0, int(pos.min()) - self.window + 1)
        sliding = causal & (pos[:, :, None] - key_pos < self.window)
        masks = {"full_attention": (0, causal[:, None]), "sliding_attention": (low, sliding[:, None, :, low:])}
        x = self.body.embed_tokens(tokens)
        rope = {kind: self.body.rotary_emb(x, pos, kind) for kind in set(self.layer_types)}
        # Where each new key/value goes: (row, kv head, position), broadcast to [B, K, kv_heads].
        index = (torch.arange(rows.start, rows.start + batch, device=tokens.device)[:, None, None],
                 torch.arange(self.config.num_key_value_heads, device=tokens.device)[None, None, :],
                 pos[:, :, None])
        for i, layer in enumerate(self.body.layers[: self.config.num_hidden_layers]):
            kind = self.layer_types[i]
            h = self._attention(layer, layer.input_layernorm(x), cache, i, index, rope[kind],
                                masks[kind], rows, span)
            x = x + layer.post_attention_layernorm(h)
            h = self._mlp(layer.mlp, layer.pre_feedforward_layernorm(x))
            x = x + layer.post_feedforward_layernorm(h)
        return self.body.norm(x)

    def _mlp(self, mlp: Any, x: torch.Tensor) -> torch.Tensor:
        gate = mlp.act_fn(self._linear(mlp.gate_proj, x))
        return self._linear(mlp.down_proj, gate * self._linear(mlp.up_proj, x))

    def _attention(self, layer: Any, x: torch.Tensor, cache: KVCache, i: int, index: tuple, rope: tuple,
                   mask: tuple[int, torch.Tensor], rows: slice, span: int) -> torch.Tensor:
        attn = layer.self_attn
        batch, width, _ = x.shape
        shape = (batch, width, -1, attn.head_dim)
        q = attn.q_norm(self._linear(attn.q_proj, x).view(shape).transpose(1, 2))
        k = attn.k_norm(self._linear(attn.k_proj, x).view(shape).transpose(1, 2))
        v = self._linear(attn.v_proj, x).view(shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *rope)
        cache.k[i].index_put_(index, k.transpose(1, 2))  # [B, K, kv_heads, D] at (row, head, position)
        cache.v[i].index_put_(index, v.transpose(1, 2))
        low, mask = mask
        out = _attend(q, cache.k[i][rows, :, low:span], cache.v[i][rows, :, low:span], mask, attn.scaling)
        return self._linear(attn.o_proj, out.transpose(1, 2).reshape(batch, width, -1))


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
