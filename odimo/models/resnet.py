# SPDX-License-Identifier: Apache-2.0
"""ResNet20 (CIFAR) and ResNet18 (64x64 head: 3x3 stride-1 stem, no max-pool)."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from odimo.nn.blocks import BasicBlock
from odimo.nn.factory import FloatOps, QuantOps


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
