"""The fast engine's output head: the greedy pick among the grammar's allowed tokens, exactly, for less.

The 262,144 x 640 head is the single largest matmul of a decode step. Greedy
decoding only needs the argmax over the tokens the grammar allows, so:

- **one allowed token**: no logits at all;
- **a few allowed** (<= `SMALL`, e.g. digits inside a number): gather those
  rows of the head and score only them;
- **open-ended** (string contents): the whole head is needed, but its argmax
  is. The head is screened in bf16 (a third of the fp32 time on avx512_bf16
  CPUs, half the bytes), the `SCREEN` best candidates are rescored in fp32,
  and the winner is kept only if a rigorous rounding bound proves that no
  token outside the candidates could beat it in fp32. When the proof fails,
  that row is scored in full fp32. So the pick is the fp32 pick - screening
  changes the cost, never the output.

Whether screening pays is measured on the machine, once, on the first batch
of open-ended rows (`screen="auto"`).

Memory: a head loaded from a safetensors checkpoint is a file mapping. The
bf16 copy is built a slice at a time and each fp32 slice's pages are handed
back (`_pages.release`) once read, so screening keeps 335 MB of bf16 resident
instead of 671 + 335 MB; afterwards only rescored and gathered rows come back.

The bound, per token t with fp32 row w, hidden h and bf16 screen value s:
rounding w and h to bf16 moves each product by at most (2u + u^2)|w_i h_i|
(u = 2^-8), fp32 accumulation adds far less than 1% of that, and rounding the
sum to bf16 moves it by at most u|sum|. Summed, |s - w.h| <= 2^-7 * 1.1 *
|w| |h| + 1.01 u |s| (Cauchy-Schwarz). With N the largest row norm, every
token outside the candidates scores at most x + 1.01 u |x| + 2^-7 * 1.1 * N |h|
where x is the best screen value outside them (that bound grows with x).
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

from ._pages import is_file_backed, release

SMALL = 4096    # at most this many allowed tokens: gather their head rows instead of the full matmul
SCREEN = 32     # candidates the bf16 screen hands to the exact fp32 rescoring
# fp32 head rows read (rescoring, exact small picks) between handing a memory-mapped head's
# pages back (~2 ms each). Counted in rows, not picks: at batch 16 one pick reads ~500 rows.
_RELEASE_ROWS = 256
_SLICE = 16384  # head rows per slice when the whole fp32 head must be read (10 MB of hidden 640)
_PRODUCT = 2.0 ** -7 * 1.1   # bf16 rounding of both factors, plus fp32 accumulation slack
_OUTPUT = 2.0 ** -8 * 1.01   # bf16 rounding of the screened sum


class Head:
    """Greedy picks over an fp32 output head (`weight`: [vocab, hidden])."""

    def __init__(self, weight: torch.Tensor, eos: int, screen: str = "auto", small: int = SMALL):
        if screen not in ("auto", "on", "off"):
            raise ValueError(f"screen must be 'auto', 'on' or 'off', not {screen!r}")
        self.weight = weight
        self.eos, self.small = eos, small
        # Screening is a bf16 shortcut to an fp32 answer; a head that is not fp32 is used as is.
        self.screen = screen if weight.dtype == torch.float32 else "off"
        self._bf16: torch.Tensor | None = None
        self._max_norm = 0.0
        # Only a memory-mapped head has pages to hand back; an in-memory one is never scanned.
        self._mapped = is_file_backed(weight)
        self._touched = 0  # fp32 rows read since the head's pages were last handed back
        self.stats = {"screened": 0, "fallback": 0, "full": 0, "small": 0, "forced": 0}

    # ------------------------------------------------------------ the one entry point
    def pick(self, hidden: torch.Tensor, allowed: Sequence[torch.Tensor]) -> list[int]:
        """Greedy token for each row of `hidden` [n, hidden] among its ascending `allowed` ids."""
        picks: list[int] = [self.eos] * len(allowed)  # no allowed token: a dead state the matcher reports
        if self._mapped and self._touched >= _RELEASE_ROWS and self.screen == "on":
            # Rescored candidates and embedding lookups read scattered rows of a memory-mapped
            # fp32 head, and the kernel maps a whole large folio (up to 2 MB) per fault: left
            # alone, most of the head would be resident again after a few documents.
            release(self.weight)
            self._touched = 0
        wide = []
        for r, ids in enumerate(allowed):
            if ids.numel() == 1:
                picks[r] = int(ids[0])
                self.stats["forced"] += 1
            elif 1 < ids.numel() <= self.small:
                picks[r] = self._pick_small(hidden[r], ids)
                self.stats["small"] += 1
            elif ids.numel() > self.small:
                wide.append(r)
        if wide:
            for r, token in zip(wide, self._pick_wide(hidden[wide], [allowed[r] for r in wide])):
                picks[r] = token
        return picks

    # ------------------------------------------------------------ open-ended rows
    def _pick_wide(self, hidden: torch.Tensor, allowed: list[torch.Tensor]) -> list[int]:
        if self.screen == "auto":
            self.screen = "on" if self._screen_pays(hidden) else "off"
        if self.screen == "off":
            logits = hidden @ self.weight.T
            self.stats["full"] += len(allowed)
            return [_argmax(logits[r], ids) for r, ids in enumerate(allowed)]
        screened = torch.nn.functional.linear(hidden.to(torch.bfloat16), self._screen_weight()).float()
        return [self._rescore(screened[r][ids.to(screened.device)], hidden[r], ids,
                              lambda h=hidden[r], ids=ids: _argmax(self._full_logits(h), ids))
                for r, ids in enumerate(allowed)]

    # ------------------------------------------------------------ a few allowed
    def _pick_small(self, hidden: torch.Tensor, ids: torch.Tensor) -> int:
        """Gather the allowed rows. Once the screen is on, gather them in bf16 and rescore the
        best in fp32 (same proof): a memory-mapped fp32 head then stays paged out."""
        device_ids = ids.to(self.weight.device)

        def exact() -> int:
            self._touched += len(device_ids)
            rows = self.weight.index_select(0, device_ids)
            return int(ids[int(torch.argmax(rows @ hidden))])

        if self.screen != "on" or len(ids) <= SCREEN:
            return exact()
        rows = self._screen_weight().index_select(0, device_ids)
        values = torch.nn.functional.linear(hidden.to(torch.bfloat16)[None], rows)[0].float()
        return self._rescore(values, hidden, ids, exact)

    def _rescore(self, values: torch.Tensor, hidden: torch.Tensor, ids: torch.Tensor, fallback) -> int:
        """The fp32 argmax among `ids`, from their bf16 screen `values` plus a proof;
        `fallback()` (an exact fp32 pick) when the proof fails."""
        device_ids = ids.to(values.device)
        top = torch.topk(values, min(SCREEN + 1, len(ids)))
        candidates = device_ids[top.indices[:SCREEN]]
        self._touched += len(candidates)
        exact = self.weight.index_select(0, candidates) @ hidden
        best = exact.max()
        # Ties go to the lowest id, as argmax over the full logits would.
        winner = int(candidates[exact == best].min())
        if len(ids) <= SCREEN:
            return winner  # every allowed token was rescored
        outside = float(top.values[SCREEN])
        limit = outside + _OUTPUT * abs(outside) + _PRODUCT * self._max_norm * float(hidden.norm())
        if float(best) > limit:
            self.stats["screened"] += 1
            return winner
        self.stats["fallback"] += 1
        return fallback()

    def _full_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """fp32 logits of one row, a slice of the head at a time, each slice's pages released after."""
        parts = []
        for start in range(0, self.weight.shape[0], _SLICE):
            part = self.weight[start:start + _SLICE]
            parts.append(part @ hidden)
            release(part)
        return torch.cat(parts)

    def _screen_weight(self) -> torch.Tensor:
        if self._bf16 is None:
            copy = torch.empty(self.weight.shape, dtype=torch.bfloat16, device=self.weight.device)
            norm = 0.0
            for start in range(0, self.weight.shape[0], _SLICE):
                part = self.weight[start:start + _SLICE]
                copy[start:start + _SLICE] = part
                norm = max(norm, float(part.norm(dim=1).max()))
                release(part)
            self._bf16, self._max_norm = copy, norm
        return self._bf16

    def _screen_pays(self, hidden: torch.Tensor) -> bool:
        """Time fp32 against bf16 on this batch over a slice of the head, once per process.

        A slice (4 x `_SLICE` rows), not the whole head: reading all of a file-backed
        fp32 head would bring its 671 MB back just to time it.
        """
        weight = self._screen_weight()
        rows = slice(0, 4 * _SLICE)
        fp32, bf16, low = self.weight[rows], weight[rows], hidden.to(torch.bfloat16)
        timings = []
        for run in (lambda: hidden @ fp32.T, lambda: torch.nn.functional.linear(low, bf16)):
            run()  # first call: page faults and kernel selection
            start = time.perf_counter()
            run()
            timings.append(time.perf_counter() - start)
        release(fp32)
        pays = timings[1] < 0.8 * timings[0]  # the rescoring costs a little; it must win clearly
        if not pays:
            self._bf16 = None  # do not keep 335 MB that will never be used
        return pays


def _argmax(logits: torch.Tensor, ids: torch.Tensor) -> int:
    """Greedy pick among `ids` from full-vocabulary logits. `ids` is ascending and argmax
    returns the first maximum, so ties resolve as over -inf-masked logits."""
    return int(ids[int(torch.argmax(logits[ids.to(logits.device)]))])
