# SPDX-License-Identifier: Apache-2.0
"""Layer factories: the same architecture code builds the float, search and mapped forms.

Every architecture consumes `act(x)` before each conv: in the float form `act` is a ReLU and
the conv carries its BatchNorm; in the quantized forms `act` is a PaCT quantizer with the
platform's activation bits (whose clamp at 0 is the ReLU) and BatchNorm is folded into the conv.
"""

from __future__ import annotations

from torch import nn

from odimo.hw.geometry import LayerGeometry
from odimo.hw.platform import Platform
from odimo.nn.conv import Conv2dBN, MappedConv2d, SearchConv2d
from odimo.nn.operator_split import (
    MappedOperatorConv2d,
    OperatorChoiceConv2dBN,
    SearchOperatorConv2d,
)
from odimo.quant import FloatAdd, FloatAvgPool2d, QuantAdd, QuantAvgPool2d, UintActPact

FORMS = ("float", "search", "mapped")

#: Initial PaCT clip of the image input (images in [0, 1]) and of every other activation.
INPUT_CLIP = 1.0
ACT_CLIP = 6.0


class FloatOps:
    """Float layers with BatchNorm, for the warm-up."""

    form = "float"

    def input_act(self) -> nn.Module:
        return nn.Identity()

    def act(self) -> nn.Module:
        return nn.ReLU()

    def conv(
        self,
        c_in: int,
        c_out: int,
        k: int,
        stride: int = 1,
        groups: int = 1,
        *,
        act: nn.Module,
        searchable: bool = True,
    ) -> nn.Module:
        layer = Conv2dBN(c_in, c_out, k, stride, groups=groups)
        layer.searchable = searchable
        return layer

    def choice_conv(self, channels: int, *, act: nn.Module, searchable: bool = True):
        """A slot whose channels choose conv or depthwise (`odimo.nn.operator_split`)."""
        layer = OperatorChoiceConv2dBN(channels)
        layer.searchable = searchable
        return layer

    def classifier(
        self, c_in: int, n: int, *, act: nn.Module, searchable: bool = True, output: bool = True
    ):
        layer = nn.Conv2d(c_in, n, 1, bias=True)
        layer.searchable = searchable
        layer.decides = output
        return layer

    def add(self, act: nn.Module) -> nn.Module:
        return FloatAdd()

    def pool(self, act: nn.Module) -> nn.Module:
        return FloatAvgPool2d()


class QuantOps:
    """Quantized layers on a platform; `search=True` makes searchable convs `SearchConv2d`.

    A conv is searched only if it is marked searchable and at least two units can run it;
    otherwise it is a `MappedConv2d` on the first unit that can (digital on DIANA). Every conv
    of every form carries `searchable`, the architecture's word on whether its mapping is free.
    """

    def __init__(self, platform: Platform, search: bool):
        self.platform = platform
        self.search = search
        self.form = "search" if search else "mapped"

    def input_act(self) -> nn.Module:
        return UintActPact(INPUT_CLIP, bits=self.platform.activation_bits)

    def act(self) -> nn.Module:
        return UintActPact(ACT_CLIP, bits=self.platform.activation_bits)

    def conv(
        self,
        c_in: int,
        c_out: int,
        k: int,
        stride: int = 1,
        groups: int = 1,
        *,
        act: nn.Module,
        searchable: bool = True,
    ) -> nn.Module:
        shape = LayerGeometry("", c_in, c_out, k, k, stride, groups, 0, 0)
        allowed = self.platform.allowed_units(shape)
        kwargs = dict(platform=self.platform, input_quant=act)
        if self.search and searchable and sum(allowed) >= 2:
            layer = SearchConv2d(c_in, c_out, k, stride, groups, **kwargs)
        else:
            layer = MappedConv2d(c_in, c_out, k, stride, groups, **kwargs)
        layer.searchable = searchable
        return layer

    def choice_conv(self, channels: int, *, act: nn.Module, searchable: bool = True):
        """A slot whose channels choose conv or depthwise: searched if at least two units
        of the platform can run it (the cluster and the DWE on Darkside)."""
        shape = LayerGeometry("", channels, channels, 3, 3, 1, 1, 0, 0, operator_choice=True)
        allowed = self.platform.allowed_units(shape)
        kwargs = dict(platform=self.platform, input_quant=act)
        if self.search and searchable and sum(allowed) >= 2:
            layer = SearchOperatorConv2d(channels, channels, 3, 1, 1, **kwargs)
        else:
            layer = MappedOperatorConv2d(channels, channels, 3, 1, 1, **kwargs)
        layer.searchable = searchable
        return layer

    def classifier(
        self, c_in: int, n: int, *, act: nn.Module, searchable: bool = True, output: bool = True
    ):
        """A linear layer as a 1x1 conv; `output`: its channels are the network's logits
        (`QuantConv2d.decides`: its read-out gain keeps the decision)."""
        layer = self.conv(c_in, n, 1, act=act, searchable=searchable)
        layer.decides = output
        return layer

    def add(self, act: nn.Module) -> nn.Module:
        return QuantAdd(act)

    def pool(self, act: nn.Module) -> nn.Module:
        return QuantAvgPool2d(act)


def make_ops(form: str, platform: Platform | None) -> FloatOps | QuantOps:
    """The layer factory of a form."""
    if form == "float":
        return FloatOps()
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r} (choose from {FORMS})")
    if platform is None:
        raise ValueError(f"the {form} form needs a platform")
    return QuantOps(platform, search=form == "search")
