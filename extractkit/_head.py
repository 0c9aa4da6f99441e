"""The fast engine's output head: the greedy pick among the grammar's allowed tokens, exactly, for less.

The 262,144 x 640 head is the single largest matmul of a decode step. Greedy
decoding only needs the argmax over the tokens the grammar allows, so:

- **one allowed token**: no logits at all;
- **a few allowed** (<= `SMALL`, e.g. digits inside a number): gather those
  rows of the head and score only them;
- **open-ended** (string contents): the whole head is needed, but only its
  argmax. The head is *screened* with a low-precision copy - int8 weights
  times int8 activations with a few outlier dims in fp32 (`_qint8.py`,
  fbgemm: 3-5x faster than weight-only int8 at 16 rows on an x86 CPU), int8 rows with a
  per-row scale (`_int8.py`; half the bytes of bf16) or bf16 (fast on
  avx512_bf16/AMX CPUs) - and the allowed tokens within a few error bounds
  of the row's best screen value are rescored in fp32; the winner is kept
  only if a rigorous error bound proves that no token below them could beat
  it in fp32. Where that fails (the top is forbidden, or too wide), the
  `SCREEN` best allowed candidates are rescored and tokens the bound cannot
  rule out are rescored too; only past `small` of them is the row scored in
  full fp32. So the pick is the fp32 pick - screening changes the cost,
  never the output. Where the near-top proof rarely succeeds (qint8's bound is
  ~10 logits wide), it is no longer tried, and the rows of a step take the
  general proof together (`_rescore_rows`: one top-32 over all rows, and a
  threshold that usually settles a row without another pass over its 262k values).

Which screen pays (qint8, int8, bf16 or none) is measured on the machine,
once, at the first open-ended pick (`screen="auto"`), at 1 and 16 rows; qint8
is a candidate only when that pick is a batch of rows (its build time). A head
whose first pick was one row asks again at its first batch, so a job that
warms up on one document still screens its batches with the batch answer
(24 receipts at batch 16 after a one-document warm-up on the AMX Xeon: 46.1 s
with the one-row answer, "off", against 35.1 s with qint8's); the new copy
replaces the old one (one copy in memory, never two).

The copies, their error bounds and the choice between them: `_screens.py`
(qint8's: `_qint8.py`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import _machine, _qint8, _screens
from ._pages import FileRows, is_file_backed, release
from ._screens import OUTPUT, SLICE

SMALL = 4096    # at most this many allowed tokens: gather their head rows instead of the full matmul
SCREEN = 32     # candidates the screen hands to the exact fp32 rescoring
SCREENS = ("auto", "qint8", "int8", "bf16", "off")
# fp32 head rows read (rescoring, exact small picks) between handing a memory-mapped head's
# pages back (~2 ms each). Counted in rows, not picks: at batch 16 one pick reads ~500 rows.
_RELEASE_ROWS = 256
_NEAR_TRIES = 64  # open-ended rows a screen's near-top proof is tried on before its record decides
_BLOCK = 256    # vocabulary block `_top` ranks by its largest value (fastest of 256..2048 at 16 rows)


class Head:
    """Greedy picks over an fp32 output head (`weight`: [vocab, hidden])."""

    def __init__(self, weight: torch.Tensor, eos: int, screen: str = "auto", small: int = SMALL):
        if screen not in SCREENS:
            raise ValueError(f"screen must be one of {SCREENS}, not {screen!r}")
        self.weight = weight
        self.eos, self.small = eos, small
        # Screening is a low-precision shortcut to an fp32 answer; a head that is not fp32 is used as is.
        self.screen = screen if weight.dtype == torch.float32 else "off"
        self._asking = self.screen == "auto"  # measured answers, until the batch question is asked
        self._copy: _screens.Screen | _qint8.QInt8Screen | None = None
        # Only a memory-mapped head has pages to hand back; an in-memory one is never scanned.
        self._mapped = is_file_backed(weight)
        # Rescored and gathered rows are read from the file: mapping them would bring a 2 MB folio
        # back per row (`FileRows`). Without it, they are read through the map and handed back
        # every `_RELEASE_ROWS` rows.
        self._rows = FileRows.of(weight) if self._mapped else None
        self._touched = 0  # fp32 rows read through the map since its pages were last handed back
        self._near = [0, 0]  # open-ended rows `_pick_near` tried with this screen, and proved
        self._forbidden_last: tuple[torch.Tensor, torch.Tensor] | None = None  # (ids, the ids outside them)
        self.stats = {"near": 0, "screened": 0, "widened": 0, "fallback": 0, "full": 0, "small": 0, "forced": 0}

    @property
    def screening(self) -> bool:
        return self.screen in ("qint8", "int8", "bf16")

    # ------------------------------------------------------------ the one entry point
    def pick(self, hidden: torch.Tensor, allowed: Sequence[torch.Tensor]) -> list[int]:
        """Greedy token for each row of `hidden` [n, hidden] among its ascending `allowed` ids."""
        picks: list[int] = [self.eos] * len(allowed)  # no allowed token: a dead state the matcher reports
        if self._touched >= _RELEASE_ROWS and self.screening:
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
        batch = len(hidden) > 1  # the candidates differ (qint8 only for a batch): two questions
        if self._asking and (self.screen == "auto" or batch):
            answer = _machine.choice(f"head screen {tuple(self.weight.shape)} batch={batch}",
                                     lambda: _screens.choose(self.weight, hidden))
            self._asking = not batch  # the batch answer is final; the one-row answer holds until a batch
            if answer != self.screen:
                self.screen, self._copy = answer, None  # built at its first use, the old copy freed
                self._near = [0, 0]
                if self._mapped and self.screening:
                    release(self.weight)  # what "off"'s full passes brought in: 671 MB of fp32 rows
        if not self.screening:
            logits = hidden @ self.weight.T
            self.stats["full"] += len(allowed)
            return [_argmax(logits[r], ids) for r, ids in enumerate(allowed)]
        screened = self._screen(hidden).logits(hidden)
        picks: list[int | None] = [None] * len(allowed)
        if self._near_pays():
            picks = [self._pick_near(screened[r], hidden[r], ids) for r, ids in enumerate(allowed)]
        rest = [r for r, pick in enumerate(picks) if pick is None]  # not provable near the top
        if rest:
            whole = len(rest) == len(allowed)
            rows = self._rescore_rows(screened if whole else screened[rest], hidden if whole else hidden[rest],
                                      [allowed[r] for r in rest])
            for r, pick in zip(rest, rows):
                picks[r] = pick
        return picks  # type: ignore[return-value]

    def _rescore_rows(self, screened: torch.Tensor, hidden: torch.Tensor, allowed: list[torch.Tensor]) -> list[int]:
        """`_rescore`'s proof for open-ended rows, batched: screen values [n, vocab] (overwritten).

        Each row's forbidden tokens are pushed to the lowest float in place, so its top `SCREEN`
        are its allowed best (every open-ended set is larger than `small`): one top-32 call for
        all rows, no gathering of ~255k allowed values per row. A token outside the top can win
        only if its screen value reaches `_reach`; when a row's 32nd value is below that, none
        can, and the row needs no pass over the vocabulary at all (most rows: "screened").
        """
        if min(len(ids) for ids in allowed) <= SCREEN:  # only with a `small` below SCREEN: row by row
            return [self._rescore(screened[r][ids.to(screened.device)], hidden[r], ids,
                                  lambda h=hidden[r], ids=ids: _argmax(self._full_logits(h), ids))
                    for r, ids in enumerate(allowed)]
        floor = torch.finfo(screened.dtype).min
        if all(ids is allowed[0] for ids in allowed):  # the usual step: every row inside a JSON string
            screened.index_fill_(1, self._forbidden(allowed[0], screened.device), floor)
        else:
            for r, ids in enumerate(allowed):
                screened[r].index_fill_(0, self._forbidden(ids, screened.device), floor)
        top = _top(screened, SCREEN)
        lowest = top.values[:, -1].tolist()
        picks = []
        for r in range(len(allowed)):
            best, winner = self._exact_best(top.indices[r], hidden[r])
            reach = _reach(best, self._screen().bound(hidden[r], 0.0))
            possible = None
            if lowest[r] >= reach:  # else no token outside the top reaches it: no pass over the row
                possible = screened[r] >= reach
                possible[top.indices[r]] = False
            count = 0 if possible is None else int(possible.count_nonzero())
            picks.append(self._settle(best, winner, count, lambda p=possible: p.nonzero()[:, 0], hidden[r],
                                      lambda h=hidden[r], ids=allowed[r]: _argmax(self._full_logits(h), ids)))
        return picks

    def _forbidden(self, ids: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The ids outside `ids`, ascending; the last answer is kept for the same ids object. Most
        open-ended rows are inside a JSON string and allow the same ~255k tokens, and
        `_constraint.allowed_ids` then hands back the same ids object. An index, not a mask:
        filling ~7k positions of a row costs a twelfth of a masked pass over its 262k."""
        last = self._forbidden_last
        if last is not None and last[0] is ids:
            return last[1]
        keep = torch.zeros(self.weight.shape[0], dtype=torch.bool, device=device)
        self._forbidden_last = (ids, (~keep.index_fill_(0, ids.to(device), True)).nonzero()[:, 0])
        return self._forbidden_last[1]

    def _near_pays(self) -> bool:
        """Whether to try `_pick_near` before `_rescore`: on a screen's first `_NEAR_TRIES` rows, then
        while it proves at least a quarter of them. qint8's bound is ~10 logits wide, so tens of
        thousands of tokens lie near its top and the proof failed 9 times in 10 (1.3 ms a row, ~7 %
        of a batch-16 run); int8's bound is tight. The pick is the same either way."""
        tries, proved = self._near
        return tries < _NEAR_TRIES or 4 * proved >= tries

    def _pick_near(self, values: torch.Tensor, hidden: torch.Tensor, ids: torch.Tensor) -> int | None:
        """The fp32 argmax among `ids` from the screen values [vocab] of one row, rescoring only the
        allowed tokens near the top; None where that cannot prove it (then `_rescore` does).

        `_rescore` gathers the allowed values and sorts out the best 32 (~2.4 ms a row over 262k);
        this takes one pass instead: every token within `width` of the row's best screen value,
        allowed or not, then the allowed ones among them (binary search in `ids`), all rescored
        in fp32. A screen value v is within e(v) = 1.01 u |v| + slack of the fp32 score, and
        v + e(v) grows with v, so every token below the threshold t scores less than t + e(t) in
        fp32. If that is below the least fp32 score the best near token can have, no token
        outside the near ones can win, nor tie.
        """
        self._near[0] += 1
        slack = self._screen().bound(hidden, 0.0)
        top = float(values.max())
        threshold = top - 3.0 * (slack + OUTPUT * abs(top)) - 1e-6
        near = (values >= threshold).nonzero()[:, 0]
        if len(near) > self.small:
            return None
        device_ids = ids.to(near.device)
        at = torch.searchsorted(device_ids, near).clamp_max(len(device_ids) - 1)
        near = near[device_ids[at] == near]  # the allowed ones
        if not len(near):
            return None  # the top is all tokens the grammar forbids here
        best = float(values[near].max())
        if threshold + OUTPUT * abs(threshold) + slack >= best - OUTPUT * abs(best) - slack:
            return None
        self.stats["near"] += 1
        self._near[1] += 1
        return self._exact_best(near, hidden)[1]

    # ------------------------------------------------------------ a few allowed
    def _pick_small(self, hidden: torch.Tensor, ids: torch.Tensor) -> int:
        """Gather the allowed rows. Once the screen is on, screen them and rescore the best
        in fp32 (same proof): a memory-mapped fp32 head then stays paged out."""
        device_ids = ids.to(self.weight.device)

        def exact() -> int:
            return int(ids[int(torch.argmax(self._gather(device_ids) @ hidden))])

        if self.screen not in ("int8", "bf16") or len(ids) <= SCREEN:
            return exact()  # no screen, or one whose rows cannot be gathered (qint8)
        values = self._screen().logits(hidden[None], device_ids)[0]
        return self._rescore(values, hidden, ids, exact)

    def _rescore(self, values: torch.Tensor, hidden: torch.Tensor, ids: torch.Tensor, fallback) -> int:
        """The fp32 argmax among `ids`, from their screen `values` plus a proof;
        `fallback()` (an exact fp32 pick) when the proof would need too many rows.

        The `SCREEN` best by screen value are rescored in fp32. Any other token can
        beat the best of them only if its screen value plus the bound reaches that
        best fp32 score; those (usually none, sometimes a few dozen) are rescored too.
        """
        device_ids = ids.to(values.device)
        top = torch.topk(values, min(SCREEN, len(ids)))
        candidates = device_ids[top.indices]
        best, winner = self._exact_best(candidates, hidden)
        if len(ids) <= SCREEN:
            return winner  # every allowed token was rescored
        slack = self._screen().bound(hidden, 0.0)
        # s + 1.01 u |s| + slack >= best, for every token that could still win.
        possible = values + OUTPUT * values.abs() + slack >= best
        possible[top.indices] = False
        return self._settle(best, winner, int(possible.sum()), lambda: device_ids[possible], hidden, fallback)

    def _settle(self, best: float, winner: int, count: int, others, hidden: torch.Tensor, fallback) -> int:
        """The proof's last step: `winner` scored `best` in fp32, and `count` other tokens (ids from
        `others()`) have screen values the bound cannot rule out. None: `winner`. A few: rescore
        them too. More than `small`: `fallback()`, an exact fp32 pick."""
        if count == 0:
            self.stats["screened"] += 1
            return winner
        if count > self.small:
            self.stats["fallback"] += 1
            return fallback()
        self.stats["widened"] += 1
        more, other = self._exact_best(others(), hidden)
        return winner if best > more else other if more > best else min(winner, other)

    def _exact_best(self, candidates: torch.Tensor, hidden: torch.Tensor) -> tuple[float, int]:
        """(best fp32 score, its token) among `candidates`; ties go to the lowest id, as argmax would."""
        exact = self._gather(candidates) @ hidden
        best = exact.max()
        return float(best), int(candidates[exact == best].min())

    def _gather(self, ids: torch.Tensor) -> torch.Tensor:
        """The fp32 head rows `ids`."""
        if self._rows is not None:
            return self._rows.gather(ids)
        self._touched += len(ids) if self._mapped else 0
        return self.weight.index_select(0, ids)

    def _full_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """fp32 logits of one row, a slice of the head at a time, each slice's pages released after."""
        parts = []
        for start in range(0, self.weight.shape[0], SLICE):
            part = self.weight[start:start + SLICE]
            parts.append(part @ hidden)
            release(part)
        return torch.cat(parts)

    def _screen(self, hidden: torch.Tensor | None = None):
        """The screen copy, built at first use (the first open-ended pick passes its hidden states)."""
        if self._copy is None:
            self._copy = _screens.build(self.screen, self.weight, hidden=hidden, file_rows=self._rows)
        return self._copy

def _top(values: torch.Tensor, k: int, block: int = _BLOCK) -> torch.return_types.topk:
    """torch.topk(values, k, dim=1) for values [n, vocab], in a third of its time over 262k.

    Each row's `block`-wide blocks are ranked by their largest value and only the k best blocks
    are searched. A block holding one of the row's k largest values has a maximum at least the
    k-th largest value v; fewer than k blocks have a maximum above v (each holds a value above
    v), so all of them are among the k best, and so is a block reaching v itself: the k values
    found are the k largest. Among values tied at v another index may be chosen, as topk's own
    choice among ties is unspecified; the proof (`_rescore_rows`) holds for any of them.
    """
    n, vocab = values.shape
    if vocab % block or vocab // block <= k:
        return torch.topk(values, k, dim=1)
    best = torch.topk(values.reshape(n, -1, block).amax(dim=2), k, dim=1).indices    # [n, k] blocks
    columns = (best[:, :, None] * block + torch.arange(block, device=values.device)).view(n, -1)
    top = torch.topk(torch.gather(values, 1, columns), k, dim=1)
    return torch.return_types.topk((top.values, torch.gather(columns, 1, top.indices)))


def _reach(best: float, slack: float) -> float:
    """The least screen value s with s + OUTPUT |s| + slack >= best (s + OUTPUT |s| grows with
    s), rounded down: a token below it cannot beat `best` in fp32; rounding lets more through."""
    target = best - slack
    s = target / (1 + OUTPUT) if target >= 0 else target / (1 - OUTPUT)
    return s - 1e-6 * abs(s) - 1e-6


def _argmax(logits: torch.Tensor, ids: torch.Tensor) -> int:
    """Greedy pick among `ids` from full-vocabulary logits. `ids` is ascending and argmax
    returns the first maximum, so ties resolve as over -inf-masked logits."""
    return int(ids[int(torch.argmax(logits[ids.to(logits.device)]))])
