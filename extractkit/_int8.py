"""Weight-only int8 with a bf16 scale per row: the layers' `numerics="int8"` and the head's screen.

One quantization, so both read the same rows the same way: the scale is a bf16
(the kernel's scale type) a little above max|w|/127, so no |q| exceeds 127, and
the matmul is torch's `_weight_int8pack_mm` on bf16 activations with fp32 sums.
"""

from __future__ import annotations

import torch


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 rows, bf16 scale per row) of a [rows, k] fp32 weight."""
    scale = (weight.abs().amax(dim=1) / 127 * (1 + 2.0 ** -6)).clamp_min(1e-30).to(torch.bfloat16)
    q = torch.round(weight / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def matmul(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [..., k] (any float dtype) times the quantized rows' transpose, as fp32 [..., rows]."""
    flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16).contiguous()
    return torch._weight_int8pack_mm(flat, q, scale).float().view(*x.shape[:-1], -1)
