# SPDX-License-Identifier: Apache-2.0
"""Layers whose output channels choose an *operator*, not a precision (Darkside's slots).

A slot is a stride-1 3x3 layer with C_in = C_out. Each output channel c is either a full 3x3
conv over all inputs (the cluster: `weight[c]`) or the 3x3 depthwise filter of its own input
channel c (the DWE: `dw_weight[c]`). Both branches keep their own weights and (folded)
BatchNorm bias. A depthwise filter is a full conv row that is zero except at input c, so a
unit with the ``depthwise3x3`` operator quantizes `embed_depthwise(dw_weight)`: the search's
one-conv mixture, the exact evaluation and the export then need no special case, and the
depthwise channels compute exactly what a depthwise conv computes (the zeros add nothing).

The split is odimo's per-channel softmax over units with straight-through hard sampling, so
every α gets a gradient from the first step and channels move both ways (the reference's
prefix with |α| initialised at exactly 0 for half the channels cannot grow the conv share).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from odimo.nn.conv import Conv2dBN, MappedConv2d, QuantConv2d, SearchConv2d


def embed_depthwise(dw_weight: Tensor) -> Tensor:
    """[C, 1, K, K] depthwise filters as the [C, C, K, K] full-conv weight that equals them."""
    c = dw_weight.shape[0]
    full = dw_weight.new_zeros(c, c, *dw_weight.shape[2:])
    index = torch.arange(c, device=dw_weight.device)
    return full.index_put((index, index), dw_weight[:, 0])


class OperatorChoiceConv2dBN(Conv2dBN):
    """Float form of a slot: a 3x3 conv + BN and a 3x3 depthwise conv + BN (`dw`).

    Training draws the number k of conv channels uniformly per forward (the reference's
    warm-up with random splits) and gives the first k channels the conv, the rest the
    depthwise filter, so both branches learn; evaluation uses an even split.
    """

    operator_choice = True

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__(channels, channels, kernel_size, 1)
        self.dw = Conv2dBN(channels, channels, kernel_size, 1, groups=channels)
        self.dw.cost_exempt = True  # the slot is one layer to the cost model

    def forward(self, x: Tensor) -> Tensor:
        c = self.out_channels
        k = int(torch.randint(0, c + 1, ())) if self.training else c // 2
        conv = (torch.arange(c, device=x.device) < k).to(x.dtype).view(1, -1, 1, 1)
        return conv * super().forward(x) + (1 - conv) * self.dw(x)


class _OperatorChoice:
    """Shared by the search and mapped slots: the depthwise branch's weight and bias."""

    operator_choice = True

    def _init_depthwise(self: QuantConv2d) -> None:
        c, k = self.out_channels, self.kernel_size
        self.dw_weight = nn.Parameter(torch.empty(c, 1, *k))
        nn.init.kaiming_uniform_(self.dw_weight, a=5**0.5)
        self.dw_bias = nn.Parameter(torch.zeros(c))
        self._depthwise_units = tuple(
            u for u, unit in enumerate(self.platform.units) if unit.operator == "depthwise3x3"
        )

    def unit_float_weight(self, unit: int) -> Tensor:
        if unit in self._depthwise_units:
            return embed_depthwise(self.dw_weight)
        return self.weight

    def unit_float_bias(self, unit: int) -> Tensor:
        return self.dw_bias if unit in self._depthwise_units else self.bias

    @torch.no_grad()
    def load_float(self, weight: Tensor, bias: Tensor, source: nn.Module) -> None:
        QuantConv2d.load_float(self, weight, bias, source)
        if isinstance(source, OperatorChoiceConv2dBN):
            dw_weight, dw_bias = source.dw.folded()
            self.dw_weight.copy_(dw_weight)
            self.dw_bias.copy_(dw_bias)


class SearchOperatorConv2d(_OperatorChoice, SearchConv2d):
    """A searched slot: α per channel over the units (cluster conv vs DWE depthwise)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_depthwise()


class MappedOperatorConv2d(_OperatorChoice, MappedConv2d):
    """A slot with a frozen per-channel operator choice."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_depthwise()
