# SPDX-License-Identifier: Apache-2.0
"""Blocks shared by the model zoo, the sampled spaces and the converter's users, written once
against the layer factory (float/search/mapped form).

Like every odimo network, each conv consumes `act(x)`: a ReLU in the float form, a PaCT
quantizer in the quantized forms.
"""

from __future__ import annotations

from torch import Tensor, nn

from odimo.nn.factory import FloatOps, QuantOps

Ops = FloatOps | QuantOps


def residual_shortcut(ops: Ops, c_in: int, c_out: int, stride: int, act):
    """(downsample, add) of a residual block whose main branch reads `act(x)`.

    A 1x1 strided conv (reading the same quantized input) when the shape changes, and an add
    with its own clip; otherwise no downsample and an add that shares `act`'s clip.
    """
    if stride != 1 or c_in != c_out:
        return ops.conv(c_in, c_out, 1, stride, act=act), ops.add(ops.act())
    return None, ops.add(act)


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut (1x1 strided conv when the shape changes).

    Quantized form: without a downsample, the add quantizes both addends with conv1's input
    clip (the same parameter); with one, the add has its own clip.
    """

    def __init__(self, ops: Ops, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.act1 = ops.act()
        self.conv1 = ops.conv(c_in, c_out, 3, stride, act=self.act1)
        self.act2 = ops.act()
        self.conv2 = ops.conv(c_out, c_out, 3, 1, act=self.act2)
        self.downsample, self.add = residual_shortcut(ops, c_in, c_out, stride, self.act1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act1(x)
        out = self.conv2(self.act2(self.conv1(x)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.add(out, shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce to `c_out // 4` (at least 4), 3x3 (strided), 1x1 expand, and a shortcut."""

    def __init__(self, ops: Ops, c_in: int, c_out: int, stride: int):
        super().__init__()
        mid = max(4, c_out // 4)
        self.act1 = ops.act()
        self.conv1 = ops.conv(c_in, mid, 1, 1, act=self.act1)
        self.act2 = ops.act()
        self.conv2 = ops.conv(mid, mid, 3, stride, act=self.act2)
        self.act3 = ops.act()
        self.conv3 = ops.conv(mid, c_out, 1, 1, act=self.act3)
        self.downsample, self.add = residual_shortcut(ops, c_in, c_out, stride, self.act1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act1(x)
        out = self.conv3(self.act3(self.conv2(self.act2(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.add(out, shortcut)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand by `t` (skipped when t == 1), 3x3 depthwise, 1x1 project.

    The depthwise conv runs on the units that support grouped convs (digital on DIANA) and is
    not searchable. The shortcut is an identity add when the stride is 1 and the width is kept.
    The projection is followed by the next layer's activation (the platforms' activations are
    unsigned), so the bottleneck is not linear as in the original MobileNetV2.
    """

    def __init__(self, ops: Ops, c_in: int, c_out: int, stride: int, expansion: int):
        super().__init__()
        hidden = c_in * expansion
        self.act_in = ops.act()
        if expansion != 1:
            self.expand = ops.conv(c_in, hidden, 1, 1, act=self.act_in)
            self.act_dw = ops.act()
        else:
            self.expand = None
            self.act_dw = self.act_in
        self.depth = ops.conv(
            hidden, hidden, 3, stride, groups=hidden, act=self.act_dw, searchable=False
        )
        self.act_pw = ops.act()
        self.project = ops.conv(hidden, c_out, 1, 1, act=self.act_pw)
        self.residual = stride == 1 and c_in == c_out
        self.add = ops.add(self.act_in) if self.residual else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.act_in(x)
        h = x if self.expand is None else self.act_dw(self.expand(x))
        out = self.project(self.act_pw(self.depth(h)))
        return self.add(out, x) if self.add is not None else out
