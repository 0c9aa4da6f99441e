"""The fast engine's KV cache, and how one forward pass's attention reads it.

A row per sequence, each row with its own length (`KVCache`). Full-attention
layers store position p at slot p; sliding-window layers, once rows can outgrow
the window, are rings (p at slot p % ring), so their memory stops growing with
the document. `attention_views` says, per layer kind, where a pass writes its
new keys and which slots (and mask) its queries attend over.
"""

from __future__ import annotations

import torch

from ._pages import trim

RING_ROOM = 32  # positions a ring row holds beyond the window: the widest pass attended in place


class KVCache:
    """Keys and values of `rows` sequences, `[rows, kv_heads, slots, head_dim]` per layer.

    A full-attention layer stores position p at slot p (it grows, up to
    `limit`). A sliding-window layer never attends further back than `window`
    positions, so where rows outgrow `window + RING_ROOM` it is a ring: p lives
    at slot p % ring, and memory no longer grows with the document (15 of
    Gemma 3 270M's 18 layers). Anything past a row's length is stale and never
    attended to, so rows can be reused without clearing them.
    """

    def __init__(self, layers: int, rows: int, length: int, kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device, limit: int | None = None,
                 sliding: list[bool] | None = None, window: int | None = None):
        self.limit = limit  # growth stops here: no row can need more (the engine's prompt + budget)
        capacity = window + RING_ROOM if window else None
        longest = limit if limit is not None else length
        # Per layer: the ring's size, or None for a position-indexed layer.
        self.ring = [capacity if sliding and sliding[i] and capacity < longest else None for i in range(layers)]
        self.k = [torch.zeros((rows, kv_heads, ring or length, head_dim), dtype=dtype, device=device)
                  for ring in self.ring]
        self.v = [torch.zeros_like(t) for t in self.k]

    @property
    def rows(self) -> int:
        return self.k[0].shape[0]

    @property
    def length(self) -> int:
        """Positions a row can hold (the rings hold their last `ring` of them)."""
        linear = [k.shape[2] for k, ring in zip(self.k, self.ring) if ring is None]
        return linear[0] if linear else self.limit or 0

    def slots(self, layer: int, positions: torch.Tensor) -> torch.Tensor:
        ring = self.ring[layer]
        return positions if ring is None else positions % ring

    def reserve(self, length: int) -> None:
        """Grow every position-indexed layer to hold `length` positions (doubling, so growth
        is rare, up to `limit`); rings never grow."""
        if length <= self.length:
            return
        new = max(length, 2 * self.length)
        if self.limit is not None:
            new = max(length, min(new, self.limit))
        for cache in (self.k, self.v):
            for i, old in enumerate(cache):
                if self.ring[i] is None:
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
        for i in range(len(self.k)):
            ring = self.ring[i]
            positions = torch.arange(max(0, length - ring) if ring else 0, length, device=self.k[i].device)
            dst, src = self.slots(i, positions), source.slots(i, positions)
            self.k[i][row, :, dst] = source.k[i][0, :, src]
            self.v[i][row, :, dst] = source.v[i][0, :, src]


def attention_views(cache: "KVCache", pos: torch.Tensor, start: torch.Tensor, span: int, window: int) -> dict:
    """Per layer kind ("full_attention", "sliding_attention", "ring"), how a pass at positions
    `pos` [B, K] (row b from start[b]) writes and reads the cache; `span` = last position + 1."""
    key_pos = torch.arange(span, device=pos.device)
    causal = key_pos[None, None, :] <= pos[:, :, None]                        # [B, K, span]
    # A position-indexed sliding layer reads only the tail it can see: from the earliest
    # query's window on (first key, mask).
    low = max(0, int(pos.min()) - window + 1)
    sliding = causal & (pos[:, :, None] - key_pos < window)
    views = {"full_attention": _Linear(0, causal[:, None]),
             "sliding_attention": _Linear(low, sliding[:, None, :, low:])}
    ring = next((r for r in cache.ring if r is not None), None)
    if ring is not None:
        views["ring"] = (_RingInPlace(pos, ring, window) if pos.shape[1] <= ring - window
                         else _RingGathered(pos, start, ring, window))
    return views


def _write(cache: KVCache, i: int, row_ids: torch.Tensor, pos: torch.Tensor, k: torch.Tensor,
           v: torch.Tensor) -> None:
    """New keys/values k, v [B, kv_heads, K, D] into layer i at (row, head, slot of position)."""
    heads = torch.arange(k.shape[1], device=k.device)
    index = (row_ids[:, None, None], heads[None, None, :], cache.slots(i, pos)[:, :, None])
    cache.k[i].index_put_(index, k.transpose(1, 2))  # [B, K, kv_heads, D] at (row, head, slot)
    cache.v[i].index_put_(index, v.transpose(1, 2))


class _Linear:
    """A position-indexed layer: write the new keys, attend over slots [low, span) in order."""

    def __init__(self, low: int, mask: torch.Tensor):
        self.low, self.mask = low, mask

    def attend(self, cache, i, row_ids, pos, k, v, span):
        _write(cache, i, row_ids, pos, k, v)
        rows = slice(int(row_ids[0]), int(row_ids[-1]) + 1)
        return cache.k[i][rows, :, self.low:span], cache.v[i][rows, :, self.low:span], self.mask


class _RingInPlace:
    """A narrow pass (decode, fast-forward) on a ring: write, then attend over the whole ring.

    Slot s of a row whose pass ends at position `end` holds the latest position
    p = end - 1 - ((end - 1 - s) mod ring); the ring is `window + RING_ROOM`
    and the pass at most RING_ROOM wide, so every position a query can see is
    there, and a slot still holding a padded or rejected draft position from an
    earlier pass maps to a p at least `window` back: masked. The keys are in
    ring order, not position order - the same set, summed in another order.
    """

    def __init__(self, pos: torch.Tensor, ring: int, window: int):
        end = pos[:, -1:] + 1                                                      # [B, 1]
        slot = torch.arange(ring, device=pos.device)
        held = end - 1 - torch.remainder(end - 1 - slot, ring)                     # [B, ring]
        back = pos[:, :, None] - held[:, None, :]                                  # [B, K, ring]
        self.mask = ((held[:, None, :] >= 0) & (back >= 0) & (back < window))[:, None]

    def attend(self, cache, i, row_ids, pos, k, v, span):
        _write(cache, i, row_ids, pos, k, v)
        rows = slice(int(row_ids[0]), int(row_ids[-1]) + 1)
        return cache.k[i][rows], cache.v[i][rows], self.mask


class _RingGathered:
    """A wide pass (prefill) on a ring: attend over the earlier positions still in view, gathered
    from the ring in position order, then the new keys; write the new ones (the last `ring`)
    after. Keys in position order, as a position-indexed layer would have them."""

    def __init__(self, pos: torch.Tensor, start: torch.Tensor, ring: int, window: int):
        low = max(0, int(start.min()) - window + 1)
        self.old = torch.arange(low, int(start.max()), device=pos.device)          # earlier positions
        keys = torch.cat([self.old.expand(len(pos), -1), pos], dim=1)              # [B, old + K]
        earlier = torch.cat([self.old[None] < start[:, None], pos >= 0], dim=1)    # a row's own, not stale
        back = pos[:, :, None] - keys[:, None, :]
        self.mask = (earlier[:, None, :] & (back >= 0) & (back < window))[:, None]
        self.ring = ring

    def attend(self, cache, i, row_ids, pos, k, v, span):
        slots = cache.slots(i, self.old)
        old_k = cache.k[i][row_ids[:, None], :, slots[None]].transpose(1, 2)       # [B, kv_heads, old, D]
        old_v = cache.v[i][row_ids[:, None], :, slots[None]].transpose(1, 2)
        keys, values = torch.cat([old_k, k], dim=2), torch.cat([old_v, v], dim=2)
        tail = slice(max(0, pos.shape[1] - self.ring), None)  # a slot written twice would be ambiguous
        _write(cache, i, row_ids, pos[:, tail], k[:, :, tail], v[:, :, tail])
        return keys, values, self.mask
