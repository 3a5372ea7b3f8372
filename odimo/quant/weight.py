# SPDX-License-Identifier: Apache-2.0
"""Weight quantizers of the compute units and the integer bias quantizer.

Every weight quantizer maps the shared float weight [C_out, C_in/g, K_y, K_x] to the unit's
fake-quantized weight, has `init_from(weight)` (called after BatchNorm folding) and `step()`,
the per-output-channel weight step [C_out] used to put the bias on the integer grid.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from odimo.ste import floor_pow2_ste, round_ste


class Factored(NamedTuple):
    """A fake-quantized weight as `inner · out_scale / out_div`, for exact accumulation.

    `inner` holds integer codes times a power of two, so a conv with it over inputs on a
    power-of-two grid accumulates exactly (order-independent); `inner_mult` is that power of
    two (the bias goes on the same grid); the remaining factors are applied once to the conv
    output (`out_scale` per output channel, `out_div` a constant; None = 1). Gradients flow as
    through the quantizer's `forward` (same STEs, the product merely re-associated).
    """

    inner: Tensor
    inner_mult: Tensor | float
    out_scale: Tensor | None
    out_div: float | None


class Int8WeightPow2(nn.Module):
    """8-bit symmetric weights with one power-of-two RANGE s per layer: s·round(127·clamp(W/s))/127.

    The learned quantity is log2(s) (continuous); the forward uses 2^floor(log2 s) with an
    identity gradient. Init: s = 2^floor(log2(2·max|W|)). The step is s/127 (not a power of two):
    deployment requantises with an integer multiplier and a shift, as the original flow does.
    """

    levels = 127

    def __init__(self, out_channels: int):
        super().__init__()
        self.out_channels = out_channels
        self.log2_range = nn.Parameter(torch.tensor(0.0))

    @torch.no_grad()
    def init_from(self, weight: Tensor) -> None:
        """Set the range from the weights: 2^floor(log2(2·max|W|))."""
        peak = weight.detach().abs().max().clamp(min=1e-8)
        self.log2_range.copy_(torch.floor(torch.log2(2 * peak)))

    def range(self) -> Tensor:
        """The power-of-two weight range s (gradient flows to log2_range)."""
        return floor_pow2_ste(torch.exp2(self.log2_range))

    def step(self) -> Tensor:
        """Weight step s/127 for every output channel [C_out] (no gradient)."""
        return (self.range().detach() / self.levels).expand(self.out_channels)

    def forward(self, weight: Tensor) -> Tensor:
        s = self.range()
        return s * round_ste(self.levels * torch.clamp(weight / s, -1.0, 1.0)) / self.levels

    def factored(self, weight: Tensor) -> Factored:
        """`forward(weight)` as (s·q) / 127 with integer codes q."""
        s = self.range()
        inner = s * round_ste(self.levels * torch.clamp(weight / s, -1.0, 1.0))
        return Factored(inner, s, None, float(self.levels))

    def integer(self, weight: Tensor) -> Tensor:
        """Integer weights in [-127, 127] (for export)."""
        s = self.range().detach()
        return torch.round(self.levels * torch.clamp(weight / s, -1.0, 1.0)).to(torch.int8)


def ternary_lsq_scale(weight: Tensor, candidates: int = 96) -> Tensor:
    """Per-channel ternary scale s minimising ||W - s·round(clamp(W/s,-1,1))||² (grid search).

    The threshold of the ternary quantizer is s/2, so s sets both the value and the threshold;
    the grid spans (0, 2·max|W|] per channel. Used to initialise from the real weights.
    """
    w = weight.detach().flatten(1).abs()  # [C, N]
    peak = w.amax(1).clamp(min=1e-8)  # [C]
    best_err = torch.full_like(peak, float("inf"))
    best = peak.clone()
    for i in range(1, candidates + 1):
        s = peak * (2.0 * i / candidates)
        q = torch.where(w > s.unsqueeze(1) / 2, s.unsqueeze(1), torch.zeros_like(w))
        err = ((w - q) ** 2).sum(1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, s, best)
    return best


class TernaryWeightPerChannel(nn.Module):
    """Ternary weights {-s_c, 0, +s_c} with a learned per-output-channel scale s_c = exp(θ_c).

    Value s_c·round(clamp(W/s_c, -1, 1)), i.e. threshold |W| > s_c/2. Unlike the original
    (which set s from the layer shape only), `init_from` uses the least-squares scale of the
    actual weights of each channel (`ternary_lsq_scale`).
    """

    def __init__(self, out_channels: int):
        super().__init__()
        self.out_channels = out_channels
        self.log_scale = nn.Parameter(torch.zeros(out_channels))

    @torch.no_grad()
    def init_from(self, weight: Tensor) -> None:
        """Least-squares scale per channel from the weights."""
        self.log_scale.copy_(torch.log(ternary_lsq_scale(weight)))

    def scale(self) -> Tensor:
        """Per-channel scale s_c [C_out] (gradient flows to log_scale)."""
        return torch.exp(self.log_scale)

    def step(self) -> Tensor:
        """Weight step = s_c per channel [C_out] (no gradient)."""
        return self.scale().detach()

    def forward(self, weight: Tensor) -> Tensor:
        s = self.scale().view(-1, *([1] * (weight.dim() - 1)))
        return s * round_ste(torch.clamp(weight / s, -1.0, 1.0))

    def factored(self, weight: Tensor) -> Factored:
        """`forward(weight)` as t · s_c with ternary codes t (s_c applied to the conv output)."""
        s = self.scale()
        t = round_ste(torch.clamp(weight / s.view(-1, *([1] * (weight.dim() - 1))), -1.0, 1.0))
        return Factored(t, 1.0, s, None)

    def integer(self, weight: Tensor) -> Tensor:
        """Ternary codes in {-1, 0, 1} (for export)."""
        s = self.step().view(-1, *([1] * (weight.dim() - 1)))
        return torch.round(torch.clamp(weight / s, -1.0, 1.0)).to(torch.int8)


class Int16Bias(nn.Module):
    """16-bit bias on the grid step = weight step × activation step (per output channel)."""

    def __init__(self, bits: int = 16):
        super().__init__()
        self.bits = bits
        self.qmin = -(2 ** (bits - 1))
        self.qmax = 2 ** (bits - 1) - 1

    def forward(self, bias: Tensor, step: Tensor) -> Tensor:
        return step * self.codes(bias, step)

    def codes(self, bias: Tensor, step: Tensor) -> Tensor:
        """Integer-valued bias codes (float, identity gradient inside the range)."""
        return round_ste(torch.clamp(bias / step, self.qmin, self.qmax))

    def integer(self, bias: Tensor, step: Tensor) -> Tensor:
        """Integer bias codes (int32 holding 16-bit values, for export)."""
        return torch.round(torch.clamp(bias / step, self.qmin, self.qmax)).to(torch.int32)


#: Weight quantizer of each `ComputeUnit.weight_format`.
WEIGHT_QUANTIZERS: dict[str, type[nn.Module]] = {
    "int8_pow2": Int8WeightPow2,
    "ternary_per_channel": TernaryWeightPerChannel,
}
