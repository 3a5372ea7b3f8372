# SPDX-License-Identifier: Apache-2.0
"""Layers whose output channels choose an *operator*, not a precision (Darkside's slots).

A slot is a stride-1 3x3 layer with C_in = C_out. Each output channel c is either a full 3x3
conv over all inputs (the cluster: `weight[c]`) or the 3x3 depthwise filter of its own input
channel c (the DWE: `dw_weight[c]`). Both branches keep their own weights and (folded)
BatchNorm bias. A depthwise filter is a full conv row that is zero except at input c, so a
unit with the ``depthwise3x3`` operator quantizes `embed_depthwise(dw_weight)`: the search's
one-conv mixture, the exact evaluation and the export then need no special case, and the
depthwise channels compute exactly what a depthwise conv computes (the zeros add nothing).
The deployed form (`SplitOperatorConv2d`) drops the zeros: the conv unit's share is a conv over
every input channel, a depthwise unit's share a real depthwise conv (groups = its channels)
on its own input channels only.

The split is odimo's per-channel softmax over units with straight-through hard sampling, so
every α gets a gradient from the first step and channels move both ways (the reference's
prefix with |α| initialised at exactly 0 for half the channels cannot grow the conv share).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from odimo.errors import ConfigError
from odimo.nn.conv import Conv2dBN, MappedConv2d, QuantConv2d, SearchConv2d
from odimo.nn.split import SplitConv2d, UnitConv2d
from odimo.quant import Int8WeightPow2, TernaryWeightPerChannel

#: Weight quantizers that act elementwise with Q(0) = 0 (see `unit_weight_bias`).
ELEMENTWISE_QUANTIZERS = (Int8WeightPow2, TernaryWeightPerChannel)


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
        self.depthwise_units = tuple(
            u for u, unit in enumerate(self.platform.units) if unit.operator == "depthwise3x3"
        )

    def unit_float_weight(self, unit: int) -> Tensor:
        if unit in self.depthwise_units:
            return embed_depthwise(self.dw_weight)
        return self.weight

    def unit_float_bias(self, unit: int) -> Tensor:
        return self.dw_bias if unit in self.depthwise_units else self.bias

    def unit_weight_bias(self: QuantConv2d, unit: int) -> tuple[Tensor, Tensor]:
        """As `QuantConv2d.unit_weight_bias`; a depthwise unit quantizes its C filters, then
        embeds them. Its quantizer is elementwise with Q(0) = 0 and a scale the zeros do not
        change, so this equals quantizing the embedded C x C weight, values and gradients, with
        C times less work (in the search most of a slot's step is such weight work)."""
        wq = self.weight_quants[unit]
        if unit not in self.depthwise_units or not isinstance(wq, ELEMENTWISE_QUANTIZERS):
            return QuantConv2d.unit_weight_bias(self, unit)
        step = wq.step() * self.input_quant.step()
        return embed_depthwise(wq(self.dw_weight)), self.bias_quant(self.dw_bias, step)

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


def depthwise_rows(weight: Tensor, rows: Tensor) -> Tensor:
    """The [n, 1, K, K] depthwise filters of output channels `rows` of an `embed_depthwise`
    weight [C, C, K, K] (input columns in the original order): row c's filter sits at input c.
    Refuses a weight with anything outside those filters (it would not be depthwise)."""
    picked = weight[rows]
    index = torch.arange(len(rows), device=weight.device)
    filters = picked[index, rows]
    if bool(picked.index_put((index, rows), torch.zeros_like(filters)).any()):
        raise ConfigError("a depthwise unit's weight has taps outside its own input channel")
    return filters.unsqueeze(1)


def split_layout(
    weight: Tensor, layer: nn.Module, unit: int, rows: Tensor, columns: Sequence[int]
) -> Tensor:
    """One unit's rows of a layer's weight (or integer codes) as the split network stores them:
    input columns in `columns` order for a groups = 1 conv; the depthwise unit of an
    operator-choice slot its filters [n, 1, K, K] (row i reads input channel rows[i])."""
    if unit in getattr(layer, "depthwise_units", ()):
        return depthwise_rows(weight, rows)
    weight = weight[rows]
    if layer.groups != 1:
        return weight
    return weight[:, torch.as_tensor(columns, dtype=torch.long, device=weight.device)]


def input_runs(in_order: Sequence[int], channels: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """(start, stop) slices of an input stored in `in_order` whose concatenation holds the
    input channels `channels`, in that order (consecutive positions share one slice)."""
    position = {int(c): p for p, c in enumerate(in_order)}
    runs: list[tuple[int, int]] = []
    for c in channels:
        p = position[int(c)]
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return tuple(runs)


class SplitOperatorConv2d(SplitConv2d):
    """The deployable slot: one real conv per unit, a depthwise unit's as a depthwise conv.

    A unit with the ``depthwise3x3`` operator computes its n channels with a conv of groups = n
    on the n input channels they read, cut from the input by static slices (`in_runs`, no
    gather) in the order the unit emits its outputs; the other units read the whole input as
    in `SplitConv2d`. Outputs equal the mapped slot's (same integer codes, same scales).
    """

    operator_choice = True

    def __init__(self, *args, depthwise_units: Sequence[int] = (), **kwargs):
        self.depthwise_units = tuple(int(u) for u in depthwise_units)  # read by _unit_conv
        super().__init__(*args, **kwargs)
        if self.depthwise_units and self.in_channels != self.out_channels:
            raise ValueError("a slot with depthwise units needs C_in == C_out")
        self.in_runs = {
            u: input_runs(self.in_order, self.unit_channels[u])
            for u in self.depthwise_units
            if self.unit_channels[u]
        }

    @classmethod
    def _options_of(cls, layer: MappedConv2d) -> dict:
        units = tuple(layer.depthwise_units)
        if layer.readout_unit is not None and layer.readout_unit in units:
            raise ConfigError(
                f"unit {layer.platform.unit_names[layer.readout_unit]!r} has an analog read-out "
                "and a depthwise operator: the split export has no such conv"
            )
        return {"depthwise_units": units}

    def _unit_conv(self, unit, n, device, dtype) -> UnitConv2d:
        if unit not in self.depthwise_units:
            return super()._unit_conv(unit, n, device, dtype)
        conv = UnitConv2d(
            n, n, self.kernel_size, self.stride, self.padding, self.dilation, groups=n,
            bias=True, device=device, dtype=dtype,
        )  # fmt: skip
        return conv.requires_grad_(False)

    def _unit_weight(self, unit: int, weight: Tensor, rows: Tensor, columns: Tensor) -> Tensor:
        return split_layout(weight, self, unit, rows, columns)

    def _unit_input(self, unit: int, x: Tensor) -> Tensor:
        runs = self.in_runs.get(unit)
        if runs is None or runs == ((0, self.in_channels),):
            return x
        parts = [x[:, start:stop] for start, stop in runs]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def extra_repr(self) -> str:
        runs = ", ".join(f"{self.unit_names[u]}_slices={len(r)}" for u, r in self.in_runs.items())
        return f"{super().extra_repr()}, {runs}" if runs else super().extra_repr()
