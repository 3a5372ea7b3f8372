# SPDX-License-Identifier: Apache-2.0
"""The float form of a converted linear classifier, and shaping odimo's convs like a source conv."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odimo.convert.trace import ConversionError


class LinearAsConv2d(nn.Conv2d):
    """A linear layer stored as a 1x1 conv on a [N, F, 1, 1] map (odimo's classifier).

    The forward computes `F.linear` exactly as `nn.Linear` does (same weights, same kernel), so
    the float form of a converted network equals the original to the bit; the geometry a dry
    pass records is that of a 1x1 conv on a 1x1 map, like the quantized forms' classifier.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, 1, bias=bias)

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear) -> LinearAsConv2d:
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None)
        layer.to(device=linear.weight.device, dtype=linear.weight.dtype)
        layer.weight.copy_(linear.weight.view_as(layer.weight))
        if linear.bias is not None:
            layer.bias.copy_(linear.bias)
        return layer

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x.flatten(1), self.weight.flatten(1), self.bias)[:, :, None, None]


def int_padding(src: nn.Conv2d) -> tuple[int, int]:
    """The source's padding as two ints ('valid' and symmetric 'same' included)."""
    if src.padding == "valid":
        return (0, 0)
    if src.padding == "same":
        total = [d * (k - 1) for d, k in zip(src.dilation, src.kernel_size, strict=True)]
        if any(t % 2 for t in total):
            raise ConversionError(
                f"conv with padding='same' and an even kernel {tuple(src.kernel_size)} pads "
                "asymmetrically, which DIANA's convs cannot: use explicit symmetric padding"
            )
        return (total[0] // 2, total[1] // 2)
    return tuple(int(p) for p in src.padding)


def shape_like(layer: nn.Conv2d, src: nn.Conv2d) -> nn.Conv2d:
    """Give an odimo conv (built with a square kernel) the source's stride, padding, dilation
    and kernel, so both compute the same convolution (the weight is re-initialised if the
    kernel's shape changes)."""
    layer.stride = tuple(src.stride)
    layer.padding = int_padding(src)
    layer.dilation = tuple(src.dilation)
    if tuple(layer.kernel_size) != tuple(src.kernel_size):
        layer.kernel_size = tuple(src.kernel_size)
        layer.weight = nn.Parameter(torch.empty_like(src.weight, device=layer.weight.device))
        layer.reset_parameters()
    return layer
