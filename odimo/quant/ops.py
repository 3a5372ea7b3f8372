# SPDX-License-Identifier: Apache-2.0
"""Quantized residual add and average pooling (both re-quantise with a PaCT quantizer)."""

from __future__ import annotations

from torch import Tensor, nn

from odimo.quant.activation import UintActPact


class QuantAdd(nn.Module):
    """act(a) + act(b) with ONE shared PaCT quantizer; the sum itself is not re-quantised.

    Both addends land on the same power-of-two grid, so the sum is exact in integers.
    """

    def __init__(self, act: UintActPact):
        super().__init__()
        self.act = act

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.act(a) + self.act(b)


class QuantAvgPool2d(nn.Module):
    """Global average pooling that quantises its INPUT (not its output), keeping [N, C, 1, 1]."""

    def __init__(self, act: UintActPact):
        super().__init__()
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x).mean(dim=(-2, -1), keepdim=True)


class FloatAdd(nn.Module):
    """Plain float residual add a + b (b is already rectified; the next layer applies ReLU)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


class FloatAvgPool2d(nn.Module):
    """ReLU then global average pooling, keeping [N, C, 1, 1]."""

    def forward(self, x: Tensor) -> Tensor:
        return x.relu().mean(dim=(-2, -1), keepdim=True)
