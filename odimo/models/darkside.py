# SPDX-License-Identifier: Apache-2.0
"""The MobileNetV1-like network of the ODiMO journal's Darkside experiments.

Width f (8, 16 or 32: 0.25x, 0.5x, 1x): stem 3x3 stride 2 (3->f) -> dw/pw (->2f) -> dw s2/pw
(->4f) -> S -> dw s2/pw (->8f) -> S -> dw s2/pw (->16f) -> S S S S S -> dw s2/pw (->32f) -> S
-> global average pool -> linear. The 8 S slots (`slot1` ... `slot8`) are stride-1 3x3 layers
with C_in = C_out whose channels each choose a full conv (cluster) or their own depthwise
filter (DWE): the only searchable layers. Every other layer is fixed. `slots=separable` builds
the depthwise-separable baseline instead: each slot a fixed 3x3 depthwise + 1x1 pointwise.
"""

from __future__ import annotations

from torch import Tensor, nn

from odimo.errors import ConfigError
from odimo.models.mobilenet import DepthwiseSeparable
from odimo.nn.factory import FloatOps, QuantOps

WIDTHS = (8, 16, 32)
SLOT_KINDS = ("choice", "separable")
#: (kind, channels as a multiple of f, stride): "ds" a fixed dw/pw block, "slot" an S slot.
LAYOUT = (
    ("ds", 2, 1),
    ("ds", 4, 2),
    ("slot", 4, 1),
    ("ds", 8, 2),
    ("slot", 8, 1),
    ("ds", 16, 2),
    ("slot", 16, 1),
    ("slot", 16, 1),
    ("slot", 16, 1),
    ("slot", 16, 1),
    ("slot", 16, 1),
    ("ds", 32, 2),
    ("slot", 32, 1),
)


class Slot(nn.Module):
    """One S slot: act -> the operator-choice layer (or dw + pw for `separable`)."""

    def __init__(self, ops: FloatOps | QuantOps, channels: int, kind: str):
        super().__init__()
        if kind == "separable":
            self.act = nn.Identity()
            self.layer = DepthwiseSeparable(ops, channels, channels, 1, point_searchable=False)
        else:
            self.act = ops.act()
            self.layer = ops.choice_conv(channels, act=self.act)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(self.act(x))


class DarksideMobileNet(nn.Module):
    """Names: `stem`, `features.<i>` (blocks and slots), `fc`."""

    def __init__(
        self,
        ops: FloatOps | QuantOps,
        input_size: tuple[int, int, int],
        num_classes: int,
        width: int = 16,
        slots: str = "choice",
    ):
        super().__init__()
        if width not in WIDTHS:
            raise ConfigError(f"model.width must be one of {WIDTHS}, got {width!r}")
        if slots not in SLOT_KINDS:
            raise ConfigError(f"model.slots must be one of {SLOT_KINDS}, got {slots!r}")
        self.input_act = ops.input_act()
        self.stem = ops.conv(input_size[0], width, 3, 2, act=self.input_act, searchable=False)
        blocks: dict[str, nn.Module] = {}
        c, n_slot = width, 0
        for i, (kind, mult, stride) in enumerate(LAYOUT, start=1):
            if kind == "ds":
                blocks[f"b{i}"] = DepthwiseSeparable(
                    ops, c, mult * width, stride, point_searchable=False
                )
                c = mult * width
            else:
                n_slot += 1
                blocks[f"slot{n_slot}"] = Slot(ops, c, slots)
        self.features = nn.Sequential()
        for name, block in blocks.items():
            self.features.add_module(name, block)
        self.pool_act = ops.act()
        self.pool = ops.pool(self.pool_act)
        self.fc = ops.classifier(c, num_classes, act=self.pool_act, searchable=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(self.stem(self.input_act(x)))
        return self.fc(self.pool(x)).flatten(1)


def darkside_mbv1(
    ops: FloatOps | QuantOps,
    input_size: tuple[int, int, int],
    num_classes: int,
    width: int = 16,
    slots: str = "choice",
) -> DarksideMobileNet:
    """The Darkside MobileNetV1 at width `width` (8/16/32)."""
    return DarksideMobileNet(ops, input_size, num_classes, int(width), str(slots))
