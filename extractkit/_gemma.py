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
                 dtype: torch.dtype, device: torch.device):
        shape = (rows, kv_heads, length, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]

    @property
    def rows(self) -> int:
        return self.k[0].shape[0]

    @property
    def length(self) -> int:
        return self.k[0].shape[2]

    def reserve(self, length: int) -> None:
        """Grow every row to hold `length` positions (doubling, so growth is rare)."""
        if length <= self.length:
            return
        new = max(length, 2 * self.length)
        for cache in (self.k, self.v):
            for i, old in enumerate(cache):
                grown = old.new_zeros((old.shape[0], old.shape[1], new, old.shape[3]))
                grown[:, :, : old.shape[2]] = old
                cache[i] = grown

    def keep(self, rows: list[int]) -> None:
        """Drop every row not in `rows` (in that order): finished sequences leave the batch."""
        index = torch.tensor(rows, device=self.k[0].device)
        self.k = [t.index_select(0, index) for t in self.k]
        self.v = [t.index_select(0, index) for t in self.v]

    def copy_prefix(self, source: "KVCache", row: int, length: int) -> None:
        """Row `row` starts with the first `length` positions of `source`'s row 0."""
        for dst, src in ((self.k, source.k), (self.v, source.v)):
            for d, s in zip(dst, src):
                d[row, :, :length] = s[0, :, :length]


class GemmaRunner:
    """Runs a loaded `Gemma3ForCausalLM` (eval mode) against a `KVCache`."""

    def __init__(self, hf_model: Any):
        self.hf = hf_model
        self.config = hf_model.config
        self.body = hf_model.model
        self.head = hf_model.get_output_embeddings().weight  # [vocab, hidden], tied to the embedding
        self.window = self.config.sliding_window
        self.layer_types = list(self.config.layer_types)

    @property
    def device(self) -> torch.device:
        return self.head.device

    def new_cache(self, rows: int, length: int) -> KVCache:
        c = self.config
        return KVCache(c.num_hidden_layers, rows, length, c.num_key_value_heads, c.head_dim,
                       self.head.dtype, self.device)

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
        masks = {"full_attention": causal[:, None],
                 "sliding_attention": (causal & (pos[:, :, None] - key_pos < self.window))[:, None]}
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
            h = layer.mlp(layer.pre_feedforward_layernorm(x))
            x = x + layer.post_feedforward_layernorm(h)
        return self.body.norm(x)

    def _attention(self, layer: Any, x: torch.Tensor, cache: KVCache, i: int, index: tuple, rope: tuple,
                   mask: torch.Tensor, rows: slice, span: int) -> torch.Tensor:
        attn = layer.self_attn
        batch, width, _ = x.shape
        shape = (batch, width, -1, attn.head_dim)
        q = attn.q_norm(attn.q_proj(x).view(shape).transpose(1, 2))
        k = attn.k_norm(attn.k_proj(x).view(shape).transpose(1, 2))
        v = attn.v_proj(x).view(shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *rope)
        cache.k[i].index_put_(index, k.transpose(1, 2))  # [B, K, kv_heads, D] at (row, head, position)
        cache.v[i].index_put_(index, v.transpose(1, 2))
        keys = cache.k[i][rows, :, :span]
        values = cache.v[i][rows, :, :span]
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=attn.scaling,
                                             enable_gqa=q.shape[1] != keys.shape[1])
        return attn.o_proj(out.transpose(1, 2).reshape(batch, width, -1))
