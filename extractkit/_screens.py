"""The head's screen copies: low-precision copies of the 262k-row head, each with an error bound.

`_head.Head` screens an open-ended pick with one of them and proves the fp32
winner with its bound. Three kinds: int8 rows with a bf16 scale each and bf16
(`Screen`, here), and int8 x int8 with outlier dims in fp32 (`_qint8.QInt8Screen`).
`choose` times them against fp32 on a slice of the head; `build` makes one,
remembered per checkpoint file (`_machine`) for the whole head.

Memory: a head loaded from a safetensors checkpoint is a file mapping. The
screen copy is built a slice at a time and each fp32 slice's pages are handed
back (`_pages.release`) once read, so screening keeps ~270 MB (qint8: the
packed int8 part and its 128 fp32 columns), 168 MB (int8) or 335 MB
(bf16) resident instead of the 671 MB fp32 head; afterwards only rescored and
gathered rows come back.

The bounds, per token t with fp32 row w, hidden h (640 values) and screen
value s, with u = 2^-8 the unit roundoff of bf16 (h is rounded to bf16 for
both kernels, and both round their fp32 sum to bf16):
- bf16 copy: rounding w and h moves each product by at most (2u + u^2)|w_i h_i|,
  fp32 accumulation adds far less than 1% of that, and rounding the sum moves
  it by at most u|sum|: |s - w.h| <= 2^-7 * 1.1 * |w| |h| + 1.01 u |s|.
- int8 copy q with scale c (the kernel computes sum_i bf16(h_i) * (q_i c)):
  with D the largest |w_i - q_i c| over the head, measured when it is built,
  and |q c| <= N' (largest dequantized row norm), |s - w.h| <= 1.01 (u N' |h| +
  D |h|_1) + 1.01 u |s|.
- qint8: its own bound, in `_qint8.py`.
With N the largest row norm, every token outside the candidates scores at most
x + (that bound at x) where x is the best screen value outside them.
"""

from __future__ import annotations

import time

import torch

from . import _int8, _machine, _qint8
from ._pages import FileRows, release

SLICE = 16384  # head rows per slice when the whole fp32 head must be read (10 MB of hidden 640)
_CHUNK = 512    # rows the screen copy is computed on at a time (1.3 MB of fp32: stays in cache)
_U = 2.0 ** -8                 # bf16's unit roundoff
_PRODUCT = 2.0 ** -7 * 1.1     # bf16 copy: bf16 rounding of both factors, plus fp32 accumulation slack
OUTPUT = _U * 1.01             # bf16 rounding of the screened sum
_SLACK = 1.05                  # int8 copy: fp32 accumulation (ours and the reference's) and scale products


class Screen:
    """A low-precision copy of the head, built slice by slice, with its error bound."""

    def __init__(self, kind: str, weight: torch.Tensor, rows: slice | None = None):
        self.kind = kind
        weight = weight if rows is None else weight[rows]
        n = weight.shape[0]
        self.copy = torch.empty(weight.shape, dtype=torch.bfloat16 if kind == "bf16" else torch.int8,
                                device=weight.device)
        self.scales = torch.empty(n, dtype=torch.bfloat16, device=weight.device) if kind == "int8" else None
        # Largest row norm (dequantized for int8); int8's largest |w - q c| and largest row norm of w - q c.
        self.norm = self.error = self.error_norm = 0.0
        for start in range(0, n, SLICE):
            part = weight[start:start + SLICE]
            # In cache-sized chunks: the int8 copy takes ~10 passes over each row, which cost
            # 2.6 s over the whole head when every pass went to memory and 4x less from cache.
            for lo in range(0, len(part), _CHUNK):
                self._fill(slice(start + lo, start + min(lo + _CHUNK, len(part))), part[lo:lo + _CHUNK])
            release(part)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The copy and its bound's numbers, to save (`_machine.tensors`) and `restore`."""
        saved = {"copy": self.copy, "bounds": torch.tensor([self.norm, self.error, self.error_norm],
                                                          dtype=torch.float64)}
        return saved if self.scales is None else {**saved, "scales": self.scales}

    @classmethod
    def restore(cls, kind: str, saved: dict[str, torch.Tensor]) -> "Screen":
        screen = cls.__new__(cls)
        screen.kind, screen.copy, screen.scales = kind, saved["copy"], saved.get("scales")
        screen.norm, screen.error, screen.error_norm = (float(x) for x in saved["bounds"])
        return screen

    def matches(self, rows: FileRows) -> bool:
        """Whether a saved copy is this head's: a few rows built again from the weights agree."""
        n = rows.shape[0]
        if tuple(self.copy.shape) != rows.shape or (self.kind == "int8") != (self.scales is not None):
            return False
        ids = torch.tensor(sorted({0, n // 3, n // 2, n - 1}))
        fresh = Screen(self.kind, rows.gather(ids))
        same = torch.equal(fresh.copy, self.copy[ids])
        return same and (self.scales is None or torch.equal(fresh.scales, self.scales[ids]))

    def _fill(self, rows: slice, part: torch.Tensor) -> None:
        if self.kind == "bf16":
            self.copy[rows] = part
            self.norm = max(self.norm, float(part.norm(dim=1).max()))
            return
        q, scale = _int8.quantize(part)
        dequantized = q.float() * scale.float()[:, None]
        self.copy[rows], self.scales[rows] = q, scale
        self.norm = max(self.norm, float(dequantized.norm(dim=1).max()))
        error = dequantized - part
        self.error = max(self.error, float(error.abs().max()))
        self.error_norm = max(self.error_norm, float(error.norm(dim=1).max()))

    def logits(self, hidden: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Screen values [n, rows] of hidden [n, d] against every row, or only rows `ids`."""
        copy = self.copy if ids is None else self.copy.index_select(0, ids)
        if self.kind == "bf16":
            return torch.nn.functional.linear(hidden.to(torch.bfloat16), copy).float()
        scales = self.scales if ids is None else self.scales.index_select(0, ids)
        return _int8.matmul(hidden, copy, scales)

    def bound(self, hidden: torch.Tensor, value: float) -> float:
        """How far above its screen value `value` a token's fp32 score can be, for this hidden row."""
        if self.kind == "bf16":
            return OUTPUT * abs(value) + _PRODUCT * self.norm * float(hidden.norm())
        norm = float(hidden.norm())
        # sum_i h_i (q_i c - w_i) is at most D |h|_1 and (Cauchy-Schwarz) |q c - w| |h|: take the smaller.
        quantized = min(self.error * float(hidden.abs().sum()), self.error_norm * norm)
        return OUTPUT * abs(value) + _SLACK * (_U * self.norm * norm + quantized)


def build(kind: str, weight: torch.Tensor, rows: slice | None = None, hidden: torch.Tensor | None = None,
          file_rows: FileRows | None = None) -> Screen | _qint8.QInt8Screen:
    """The `kind` screen of `weight` (or of its `rows`); of a whole head read from its checkpoint
    (`file_rows`), the copy remembered for that file (`_machine`) where it still matches."""
    if kind == "qint8":
        # Its fp32 dims: the largest of the first hidden states (Gemma's are the same few for
        # every token; another choice would only loosen the bound, never break it).
        dims = _qint8.fp32_dims(hidden)
        if rows is not None or file_rows is None:
            return _qint8.QInt8Screen(weight, dims, rows)
        # One saved copy per head, taken when its dims are mostly these. Any dims keep the
        # proof exact, but a copy whose dims are not this model's outliers has a looser bound
        # and rescores far more (38 vs 12 s of picks in a batch); the first batches of real
        # documents differ in their weakest 3-4 of 16 (five runs on the AVX2 EPYC), and keying
        # the copy by its exact dims left a 178 MB file per run.
        return _machine.remembered(f"head screen qint8 {file_rows.identity()}",
                                   lambda: _qint8.QInt8Screen(weight, dims),
                                   _qint8.QInt8Screen.tensors, _qint8.QInt8Screen.restore,
                                   lambda saved: _close(saved["dims"], dims)
                                   and _qint8.QInt8Screen.matches(saved, weight))
    if rows is None and file_rows is not None:  # the whole head, from its checkpoint file
        return _machine.remembered(f"head screen {kind} {file_rows.identity()}",
                                   lambda: Screen(kind, weight), Screen.tensors,
                                   lambda saved: Screen.restore(kind, saved),
                                   lambda saved: Screen.restore(kind, saved).matches(file_rows))
    return Screen(kind, weight, rows)

def choose(weight: torch.Tensor, hidden: torch.Tensor) -> str:
    """Time fp32 against each screen over a slice of the head at 1 and 16 rows (once per machine:
    `Head._pick_wide` remembers the answer, `_machine.choice`).

    A slice (4 x `SLICE` rows), not the whole head: reading all of a file-backed
    fp32 head would bring its 671 MB back just to time it. Batch sizes matter:
    on an AVX2 CPU bf16 beats fp32 at 1 row and loses at 16, int8 wins at both.
    qint8 is a candidate only when the first open-ended pass is a batch (several
    rows): it takes ~3 s to build and ~100 MB more than int8, which one document
    at a time does not earn back (the first result would wait for it).
    """
    rows = slice(0, min(4 * SLICE, weight.shape[0]))
    fp32 = weight[rows]
    one = hidden[:1]
    batch = one.expand(16, -1).contiguous()
    costs = {"off": _time(lambda h: h @ fp32.T, one, batch)}
    kinds = ("qint8", "int8", "bf16") if len(hidden) > 1 and _qint8.available(hidden.device) else ("int8", "bf16")
    for kind in kinds:
        try:
            costs[kind] = _time(build(kind, weight, rows, hidden).logits, one, batch)
        except RuntimeError:  # a kernel this build or device lacks
            continue
    release(fp32)
    best = min(costs, key=costs.get)
    # The rescoring costs a little: a screen must win clearly.
    return best if costs[best] < 0.8 * costs["off"] else "off"


def _time(run, one: torch.Tensor, batch: torch.Tensor) -> float:
    """Seconds per row, summed over a 1-row and a 16-row call (each the fastest of 3, after a
    first, untimed one). The answer is remembered for good (`_machine.choice`), so one slow
    call must not decide it: a single timing once answered "off" on the AMX Xeon, where int8
    measures 0.65x fp32 every time, and one-document decoding ran at 0.198 docs/s, not ~0.3."""
    total = 0.0
    for h in (one, batch):
        run(h)  # first call: page faults and kernel selection
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            run(h)
            best = min(best, time.perf_counter() - start)
        total += best / len(h)
    return total


def _close(saved: torch.Tensor, wanted: torch.Tensor) -> bool:
    """Whether a saved qint8 screen's fp32 dims are mostly the wanted ones (3 in 4 or more)."""
    common = len(set(saved.tolist()) & set(wanted.tolist()))
    return len(saved) == len(wanted) and 4 * common >= 3 * len(wanted)
