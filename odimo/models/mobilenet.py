# SPDX-License-Identifier: Apache-2.0
"""MobileNetV1 x0.25 (Visual Wake Words). Only the 13 pointwise convs are searchable."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from odimo.nn.factory import FloatOps, QuantOps

#: (output channels, stride) of the 13 depthwise-separable blocks at width x0.25.
MBV1_025_BLOCKS = [
    (16, 1),
    (32, 2),
    (32, 1),
    (64, 2),
    (64, 1),
    (128, 2),
    (128, 1),
    (128, 1),
    (128, 1),
    (128, 1),
    (128, 1),
    (256, 2),
    (256, 1),
]


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv (digital only) then 1x1 pointwise conv (searchable)."""

    def __init__(
        self,
        ops: FloatOps | QuantOps,
        c_in: int,
        c_out: int,
        stride: int,
        point_searchable: bool = True,
    ):
        super().__init__()
        self.depth_act = ops.act()
        self.depth = ops.conv(
            c_in, c_in, 3, stride, groups=c_in, act=self.depth_act, searchable=False
        )
        self.point_act = ops.act()
        self.point = ops.conv(c_in, c_out, 1, 1, act=self.point_act, searchable=point_searchable)

    def forward(self, x: Tensor) -> Tensor:
        return self.point(self.point_act(self.depth(self.depth_act(x))))


class MobileNetV1(nn.Module):
    """MobileNetV1; names `input_layer`, `backbone.bb_<i>.depth|point`, `fc` (method §8).

    The input conv and the classifier stay digital. Inputs smaller than 32 pixels get a
    stride-1 input conv so that small images keep some spatial extent.
    """

    def __init__(
        self,
        ops: FloatOps | QuantOps,
        input_size: tuple[int, int, int],
        num_classes: int,
        stem_channels: int = 8,
        blocks=tuple(MBV1_025_BLOCKS),
    ):
        super().__init__()
        stem_stride = 2 if min(input_size[1:]) >= 32 else 1
        self.input_act = ops.input_act()
        self.input_layer = ops.conv(
            input_size[0], stem_channels, 3, stem_stride, act=self.input_act, searchable=False
        )
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c = stem_channels
        for i, (width, stride) in enumerate(blocks, start=1):
            layers[f"bb_{i}"] = DepthwiseSeparable(ops, c, width, stride)
            c = width
        self.backbone = nn.Sequential(layers)
        self.pool_act = ops.act()
        self.pool = ops.pool(self.pool_act)
        self.fc = ops.classifier(c, num_classes, act=self.pool_act, searchable=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.backbone(self.input_layer(self.input_act(x)))
        return self.fc(self.pool(x)).flatten(1)


def mbv1(ops: FloatOps | QuantOps, input_size: tuple[int, int, int], num_classes: int):
    """MobileNetV1 x0.25."""
    return MobileNetV1(ops, input_size, num_classes)
