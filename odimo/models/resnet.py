# SPDX-License-Identifier: Apache-2.0
"""ResNet20 (CIFAR) and ResNet18 (64x64 head: 3x3 stride-1 stem, no max-pool)."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from odimo.models.ops import FloatOps, QuantOps


def residual_shortcut(ops: FloatOps | QuantOps, c_in: int, c_out: int, stride: int, act):
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

    def __init__(self, ops: FloatOps | QuantOps, c_in: int, c_out: int, stride: int):
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


class ResNet(nn.Module):
    """CIFAR-style ResNet: stem conv, stages of BasicBlocks, global average pool, 1x1-conv head.

    Layer names follow the method's §8: `conv1`, `backbone.bb_<stage>_<block>.conv1|conv2|
    downsample`, `fc`.
    """

    def __init__(
        self,
        ops: FloatOps | QuantOps,
        in_channels: int,
        num_classes: int,
        stem_channels: int,
        stages: list[tuple[int, int, int]],
    ):
        super().__init__()
        self.input_act = ops.input_act()
        self.conv1 = ops.conv(in_channels, stem_channels, 3, 1, act=self.input_act)
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        c = stem_channels
        for i, (width, depth, stride) in enumerate(stages, start=1):
            for j in range(depth):
                blocks[f"bb_{i}_{j}"] = BasicBlock(ops, c, width, stride if j == 0 else 1)
                c = width
        self.backbone = nn.Sequential(blocks)
        self.pool_act = ops.act()
        self.pool = ops.pool(self.pool_act)
        self.fc = ops.classifier(c, num_classes, act=self.pool_act)

    def forward(self, x: Tensor) -> Tensor:
        x = self.backbone(self.conv1(self.input_act(x)))
        return self.fc(self.pool(x)).flatten(1)


def res20(ops: FloatOps | QuantOps, input_size: tuple[int, int, int], num_classes: int) -> ResNet:
    """ResNet20: 16-32-64 channels, 3 blocks per stage."""
    return ResNet(ops, input_size[0], num_classes, 16, [(16, 3, 1), (32, 3, 2), (64, 3, 2)])


def res18(ops: FloatOps | QuantOps, input_size: tuple[int, int, int], num_classes: int) -> ResNet:
    """ResNet18 with the 64x64 head (3x3 stride-1 stem, no max-pool)."""
    return ResNet(
        ops, input_size[0], num_classes, 64, [(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)]
    )
