"""The head's fastest CPU screen: int8 weights times int8 activations (fbgemm), outlier dims in fp32.

`_head.py` screens open-ended picks with a low-precision copy of the 262k-row
head and proves the fp32 winner with an error bound. Weight-only int8
(`_int8.py`) converts every weight back to bf16 inside its kernel; fbgemm's
dynamic quantized linear (torch's x86 int8 backend) multiplies int8 by int8
with integer sums instead: a pass over the head at 16 rows takes a fifth of
the weight-only kernel's time on a 2-core AVX2 CPU (`bench/bench_screens.py`).

Quantizing the *activations* is what a bound must survive. Gemma's final hidden
state has a few dimensions tens of times larger than the rest (the same few for
every token), and one int8 scale per row would then be coarse for all the
others. So the `FP32` largest dimensions of the first hidden states seen are
taken out and multiplied in fp32 (a 16 x 262k slice of the head, 17 MB), and
each row's remaining dimensions are divided by their largest magnitude before
fbgemm quantizes them: every row spans [-1, 1], so fbgemm's per-call
activation scale is at most 2/127 (it uses 0..127 with reduce_range) for any
mix of rows, and a row's result does not depend on the others' sizes.

The bound, per token with quantized row q c (per-row scale c) and rest-of-h
r (largest magnitude m): activation rounding moves each r_j by at most m/127,
so that term is at most |q c|_1 m / 127; weight rounding adds at most
min(D |r|_1, E |r|_2) (D: largest |w - q c|, E: largest row norm of w - q c,
measured when built); integer sums are exact, the fp32 part's sums are off by
at most (dims x 2^-23) |w_F| |h_F|, and rounding of the scales and of the
division is far below 1% of the rest (`_SLACK`). On 316 real open-ended hidden
states this leaves a median of 0 tokens (p90 0) to rescore beyond the 32
candidates; with no fp32 dims, a median of 208.

Memory: fbgemm packs a weight in blocks of 512 input dims and pads the last
with zeros, so the 624 int8 dims take 1,024: ~265 MB for the 262k rows (168 MB
of int8). Moving 128 dims to fp32 to fill one block exactly would halve that,
but MKL multiplies a 128 x 262k fp32 slice no faster than fbgemm the padding
(~30 ms at 16 rows), so the padding stays. The head takes this screen for
batches only: building it (~3-6 s on 2 cores) does not pay one document at a time.

Why fbgemm and not torch's other x86 int8 engine, oneDNN: on the AMX Xeon oneDNN
ran a layer's projections 2.7x faster at 500 rows in isolation, but it keeps a
second copy of the int8 rows (49 MB resident for a restored 20 MB form, fbgemm 27) and builds a kernel per
new row count; in the bench (50 receipts + 10 invoices at batch 16) qint8 layers
on oneDNN ran 0.852 docs/s at 1,515 MB, on fbgemm 0.902 at 1,352 MB (2026-12-07).
"""

from __future__ import annotations

import warnings

import torch

from ._pages import release

FP32 = 16       # the largest hidden dims, multiplied in fp32 instead of int8
_SLICE = 16384  # head rows per packed fbgemm weight: the fp32 source is read and released slice by slice
_SLACK = 1.02   # fp32 rounding of scales and division, and the scale's choice, with room


def available(device: torch.device) -> bool:
    """fbgemm is torch's x86 CPU int8 backend; elsewhere the other screens are used."""
    return device.type == "cpu" and "fbgemm" in torch.backends.quantized.supported_engines


def fp32_dims(hidden: torch.Tensor) -> torch.Tensor:
    """The dims of hidden states [n, d] to multiply in fp32: the `FP32` largest on average."""
    return hidden.abs().mean(dim=0).topk(min(FP32, hidden.shape[1] - 1)).indices.sort().values


def _rest(dims: torch.Tensor, n: int) -> torch.Tensor:
    """The mask of the input dims outside `dims` (those multiplied in int8)."""
    rest = torch.ones(n, dtype=torch.bool, device=dims.device)
    rest[dims] = False
    return rest


class QLinear:
    """x @ W^T for x [n, in] with W's int8 rows times int8 activations (fbgemm), `dims` of x in fp32.

    Each row of x is scaled into [-1, 1] (outside `dims`) before fbgemm quantizes it and scaled
    back after, so every row (token) gets its own activation scale. Built a slice of `_SLICE`
    rows at a time; with `measure`, records the quantization's error for a bound (the screen).
    """

    def __init__(self, weight: torch.Tensor, dims: torch.Tensor, measure: bool = False):
        if not available(weight.device):
            raise RuntimeError("int8 x int8 needs torch's fbgemm backend on an x86 CPU")
        self.dims = dims.to(weight.device)              # multiplied in fp32
        self.rest = _rest(self.dims, weight.shape[1])   # multiplied in int8 x int8 (zeroed elsewhere)
        # [dims, rows]: the layout MKL multiplies fastest from 16 rows of hidden states.
        self.fp32 = torch.empty((len(self.dims), weight.shape[0]), dtype=weight.dtype)
        self.packed: list[object] = []
        self.measure = measure
        self.norm1 = self.error = self.error_norm = 0.0  # largest |q c|_1, |w - q c|, |w - q c|_2
        for start in range(0, weight.shape[0], _SLICE):
            part = weight[start:start + _SLICE]
            self.fp32[:, start:start + len(part)] = part[:, self.dims].T
            self.packed.append(self._pack(part * self.rest))
            release(part)

    def _pack(self, rest: torch.Tensor) -> object:
        scale = (rest.abs().amax(dim=1) / 127).clamp_min(1e-30).double()
        with warnings.catch_warnings():
            # torch 2.13 marks its quantized tensor types for removal in a future release; where
            # they are gone, building raises and the callers keep their other kernels.
            warnings.simplefilter("ignore", UserWarning)
            q = torch.quantize_per_channel(rest, scale, torch.zeros(len(rest), dtype=torch.long), 0, torch.qint8)
        if self.measure:
            dequantized = q.dequantize()
            self.norm1 = max(self.norm1, float(dequantized.abs().sum(dim=1).max()))
            error = dequantized - rest
            self.error = max(self.error, float(error.abs().max()))
            self.error_norm = max(self.error_norm, float(error.norm(dim=1).max()))
        return torch.ops.quantized.linear_prepack(q, None)

    def state(self) -> dict[str, torch.Tensor]:
        """What `restore` rebuilds this from: the int8 rows and scales of each slice, the fp32 part."""
        out = {"dims": self.dims, "fp32": self.fp32}
        for i, packed in enumerate(self.packed):
            q, _ = torch.ops.quantized.linear_unpack(packed)
            out[f"int8.{i}"], out[f"scales.{i}"] = q.int_repr(), q.q_per_channel_scales()
        return out

    @classmethod
    def restore(cls, state: dict[str, torch.Tensor]) -> "QLinear":
        """A `QLinear` from `state()`: the same packed rows, without quantizing again.

        fbgemm's packing itself still runs (its packed layout is not saved), but the
        rounding of every weight - most of building - is read instead of computed.
        """
        self = cls.__new__(cls)
        # Copies (small): a saved file's tensors share its memory map, which then unmaps whole.
        self.dims, self.fp32 = state["dims"].clone(), state["fp32"].clone()
        self.measure, self.norm1, self.error, self.error_norm = False, 0.0, 0.0, 0.0
        self.packed = []
        self.rest = _rest(self.dims, state["int8.0"].shape[1])
        for i in range(sum(name.startswith("int8.") for name in state)):
            rows, scales = state[f"int8.{i}"], state[f"scales.{i}"].double()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # as in `_pack`
                q = torch._make_per_channel_quantized_tensor(rows, scales, torch.zeros(len(rows), dtype=torch.long), 0)
            self.packed.append(torch.ops.quantized.linear_prepack(q, None))
            # fbgemm copied the rows into its own layout; a memory-mapped file's pages of them would
            # otherwise stay resident until the whole state is dropped: 178 MB at the peak of a batch.
            release(rows)
        return self

    @staticmethod
    def states(forms: list["QLinear"]) -> dict[str, torch.Tensor]:
        """Several forms' `state()` as one dict, form i's tensors as "i.<name>" (one file for all)."""
        return {f"{i}.{name}": t for i, form in enumerate(forms) for name, t in form.state().items()}

    @staticmethod
    def parts(saved: dict[str, torch.Tensor], count: int) -> list[dict[str, torch.Tensor]]:
        """`states`' dict back into `count` states (empty where a form is missing)."""
        out: list[dict[str, torch.Tensor]] = [{} for _ in range(count)]
        for key, t in saved.items():
            i, _, name = key.partition(".")
            if i.isdigit() and int(i) < count:
                out[int(i)][name] = t
        return out

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x with the fp32 dims zeroed, each row's largest remaining magnitude [n, 1])."""
        rest = x * self.rest
        return rest, rest.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rest, top = self.split(x)
        unit = (rest / top).contiguous()
        parts = [torch.ops.quantized.linear_dynamic(unit, packed, True) for packed in self.packed]
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        # In place: out-of-place scaling and adding of [16, 262k] values cost as much as fbgemm's pass.
        return out.mul_(top).addmm_(x[:, self.dims], self.fp32)


class QInt8Screen:
    """Screen values and their error bound for a [vocab, hidden] fp32 head, built slice by slice.

    Its packed rows cannot be indexed, so `Head` scores small allowed sets from the fp32 rows.
    """

    def __init__(self, weight: torch.Tensor, fp32: torch.Tensor, rows: slice | None = None):
        self.linear = QLinear(weight if rows is None else weight[rows], fp32, measure=True)
        self.fp32_norm = float(self.linear.fp32.norm(dim=0).max())

    def tensors(self) -> dict[str, torch.Tensor]:
        """The packed rows' int8 form and the bound's numbers, to save (`_machine.tensors`)."""
        q = self.linear
        bounds = torch.tensor([q.norm1, q.error, q.error_norm, self.fp32_norm], dtype=torch.float64)
        return {**q.state(), "bounds": bounds}

    @classmethod
    def restore(cls, saved: dict[str, torch.Tensor]) -> "QInt8Screen":
        """A saved screen (~1.2 s for the 262k-row head, against ~3.3 s to build it). Its fp32
        dims are the ones it was built with: other dims only loosen the bound, never break it."""
        self = cls.__new__(cls)
        self.linear = QLinear.restore({k: v for k, v in saved.items() if k != "bounds"})
        q = self.linear
        q.norm1, q.error, q.error_norm, self.fp32_norm = (float(x) for x in saved["bounds"])
        return self

    @staticmethod
    def matches(saved: dict[str, torch.Tensor], weight: torch.Tensor) -> bool:
        """Whether saved tensors are this head's: a few rows quantized again agree with them."""
        rows = sum(len(v) for k, v in saved.items() if k.startswith("int8."))
        if rows != weight.shape[0] or saved["fp32"].shape != (len(saved["dims"]), rows):
            return False
        for row in sorted({0, rows // 3, rows // 2, rows - 1}):
            fresh = QLinear(weight[row:row + 1], saved["dims"]).state()
            part, at = divmod(row, _SLICE)
            if not (torch.equal(fresh["int8.0"][0], saved[f"int8.{part}"][at])
                    and torch.equal(fresh["scales.0"][0], saved[f"scales.{part}"][at].to(fresh["scales.0"].dtype))
                    and torch.equal(fresh["fp32"][:, 0], saved["fp32"][:, row])):
                return False
        return True

    def logits(self, hidden: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Screen values [n, vocab] of hidden [n, d] (fp32)."""
        if ids is not None:
            raise ValueError("the qint8 screen scores the whole head only")
        return self.linear(hidden)

    def bound(self, hidden: torch.Tensor, value: float) -> float:
        """How far above its screen value `value` a token's fp32 score can be, for this hidden row."""
        q = self.linear
        rest, top = q.split(hidden[None])
        rest = rest[0]
        weights = min(q.error * float(rest.abs().sum()), q.error_norm * float(rest.norm()))
        activations = q.norm1 * float(top) / 127
        # fp32 sums of the fp32 part: at most (terms x unit roundoff) x |w_F| |h_F|.
        exact = len(q.dims) * 2.0 ** -23 * self.fp32_norm * float(hidden[q.dims].norm())
        return _SLACK * (weights + activations) + exact + 1e-5 * abs(value)
