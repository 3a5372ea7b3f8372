# SPDX-License-Identifier: Apache-2.0
"""Unsigned PaCT activation quantizer with a learned clip and a power-of-two step."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from odimo.quant import fused


class _PactFloor(torch.autograd.Function):
    """floor(clamp(x, 0, a)·sf)/sf with the PaCT gradients, in one forward and one backward pass.

    d/dx = 1 on 0 < x < a (straight-through inside the range); d/da = 1 where x >= a. The
    elementwise work runs in the fused kernels of `odimo.quant.fused` (eager fallback).
    """

    @staticmethod
    def forward(ctx, x: Tensor, clip: Tensor, scale: Tensor) -> Tensor:
        ctx.save_for_backward(x, clip)
        return fused.call("pact_forward", x, clip, scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, clip = ctx.saved_tensors
        if ctx.needs_input_grad[1]:
            grad_x, grad_clip = fused.call("pact_backward", x, clip, grad)
            return grad_x, grad_clip.reshape(clip.shape), None
        return fused.call("pact_backward_x", x, clip, grad), None, None


class UintActPact(nn.Module):
    """Unsigned `bits`-bit activation quantizer (the clamp at 0 is the ReLU); the platform
    sets the bits (`Platform.activation_bits`: 7 on DIANA, 8 on Darkside).

    The clip `a` stays a continuous learned parameter; each forward derives the power-of-two
    scale sf = 2^floor(log2(L/a)) from it, L = 2^bits - 1 (no write-back, unlike the original
    code, whose snapping let clips move only in x2 jumps). Levels are integers
    0..floor(a·sf) <= L, step 1/sf.

    Args:
        init_clip: initial clip (1.0 for an image input in [0, 1], 6.0 elsewhere).
        bits: activation bits (7 on DIANA, 8 on Darkside).
    """

    def __init__(self, init_clip: float = 6.0, bits: int = 7):
        super().__init__()
        if init_clip <= 0:
            raise ValueError("init_clip must be > 0")
        self.bits = bits
        self.levels = 2**bits - 1
        self.clip = nn.Parameter(torch.tensor(float(init_clip)))

    def scale(self) -> Tensor:
        """Power-of-two scale sf (integer levels per unit), no gradient."""
        clip = self.clip.detach().clamp(min=1e-8)
        return torch.exp2(torch.floor(torch.log2(self.levels / clip)))

    def step(self) -> Tensor:
        """Quantization step 1/sf (a power of two), no gradient."""
        return 1.0 / self.scale()

    def forward(self, x: Tensor) -> Tensor:
        return _PactFloor.apply(x, self.clip, self.scale().to(x.dtype))

    def extra_repr(self) -> str:
        return f"bits={self.bits}, clip={self.clip.item():.4g}"


#: The name from when every platform had 7-bit activations; kept for imports (state-dict keys
#: never held a class name, and a pickle naming it still loads).
Uint7ActPact = UintActPact


def pow2_exponent(value: float) -> int:
    """floor(log2(value)) as an int (for reports and export)."""
    return int(math.floor(math.log2(value)))
