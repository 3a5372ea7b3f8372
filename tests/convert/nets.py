# SPDX-License-Identifier: Apache-2.0
"""Plain-PyTorch networks the conversion tests import (also as `model.target`s of the tasks)."""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PlainBlock(nn.Module):
    """torchvision's BasicBlock, written the usual way (conv-bn-relu, conv-bn, add, relu)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
            self.downsample_bn = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample_bn(self.downsample(x))
        out += identity
        return self.relu(out)


class PlainResNet20(nn.Module):
    """A ResNet20 as a user would write it, with odimo's layer names (conv1, backbone.*, fc)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, c = OrderedDict(), 16
        for i, (width, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            for j in range(3):
                blocks[f"bb_{i}_{j}"] = PlainBlock(c, width, stride if j == 0 else 1)
                c = width
        self.backbone = nn.Sequential(blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return self.fc(torch.flatten(self.pool(self.backbone(x)), 1))


def resnet20(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    return PlainResNet20(num_classes, in_channels)


class Mixed(nn.Module):
    """Every supported construct: strides, paddings, a dilated and a 1x3 conv, a grouped and a
    depthwise conv, a conv with bias and BN, one without BN, ReLU6, concatenation, chunk and a
    channel shuffle, max and local average pooling, a classifier on a flattened 2x2 map."""

    def __init__(self, num_classes: int = 5, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 8, 3, 2, 0, bias=True)
        self.stem_bn = nn.BatchNorm2d(8)
        self.left = nn.Conv2d(8, 8, (1, 3), 1, (0, 1), bias=False)
        self.left_bn = nn.BatchNorm2d(8)
        self.right = nn.Conv2d(8, 8, 3, 1, 2, dilation=2, bias=True)  # no BN
        self.grouped = nn.Conv2d(16, 16, 3, 1, 1, groups=4, bias=False)
        self.grouped_bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(8, 8, 3, 2, 1, groups=8, bias=False)
        self.dw_bn = nn.BatchNorm2d(8)
        self.act6 = nn.ReLU6()
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.avg = nn.AvgPool2d(2)
        self.fc = nn.Linear(16 * 2 * 2, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(F.relu(self.stem_bn(self.stem(x))))
        a = self.act6(self.left_bn(self.left(x)))
        b = torch.relu(self.right(x))
        y = torch.cat([a, b], dim=1)
        n, c, h, w = y.size()
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        y = F.relu(self.grouped_bn(self.grouped(y)))
        p, q = y.chunk(2, dim=1)
        q = F.relu(self.dw_bn(self.dw(q)))
        y = torch.cat([self.avg(p), q], dim=1)
        return self.fc(F.adaptive_avg_pool2d(y, 2).flatten(1))


def mixed(num_classes: int = 5, in_channels: int = 3) -> nn.Module:
    return Mixed(num_classes, in_channels)


class Normed(nn.Module):
    """A conv net with a LayerNorm: unsupported."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.LayerNorm([8, 8, 8])
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.norm(self.conv(x)).mean((2, 3)))


def normed(num_classes: int = 4) -> nn.Module:
    return Normed(num_classes)


class Branchy(nn.Module):
    """A forward that branches on tensor values: torch.fx cannot trace it."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.mean() > 0.5:
            x = x * 0.5
        return self.conv(x).mean((2, 3))


def branchy(num_classes: int = 4) -> nn.Module:
    return Branchy(num_classes)


class Functional(nn.Module):
    """Everything in functional form: F.relu/relu6/torch.relu, F.max_pool2d, F.avg_pool2d,
    F.adaptive_avg_pool2d, torch.flatten, x.flatten, view and reshape."""

    def __init__(self, num_classes: int = 4, in_channels: int = 3):
        super().__init__()
        self.a = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16 * 2 * 2, num_classes)
        self.fc2 = nn.Linear(num_classes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.a(x)), 2)
        x = F.avg_pool2d(F.relu6(self.b(x)), 2)
        x = F.adaptive_avg_pool2d(torch.relu(self.c(x)), 2)
        n = x.shape[0]
        y = torch.flatten(x, 1).view(n, 16, 4).reshape(n, -1)
        return self.fc2(F.relu(self.fc(y.flatten(1))))


class Padded(nn.Module):
    """Explicit zero padding before a conv (symmetric, or TF-style asymmetric `(0, 1, 0, 1)`)."""

    def __init__(self, pad: tuple[int, ...] = (1, 1, 2, 2), num_classes: int = 4):
        super().__init__()
        self.pad = pad
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn(self.conv(F.pad(x, self.pad))))
        return self.head(F.adaptive_avg_pool2d(x, 1)).flatten(1)


class Sliced(nn.Module):
    """Channel slices feeding two convs (a hand-written group split) and a batch slice."""

    def __init__(self, num_classes: int = 4, mask: bool = False):
        super().__init__()
        self.mask = mask
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.left = nn.Conv2d(8, 8, 3, padding=1)
        self.right = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))[0:]
        if self.mask:
            x = x[x >= 0].view(-1, 16, 8, 8)  # a mask: data-dependent selection
        y = torch.cat([F.relu(self.left(x[:, :8])), F.relu(self.right(x[:, 8:]))], dim=1)
        return self.fc(y.mean((2, 3)))


class Upsampled(nn.Module):
    """A conv, an upsampling (F.interpolate, `mode`, `factor`), a conv: a decoder's pattern."""

    def __init__(self, mode: str = "nearest", factor: float = 2, num_classes: int = 4):
        super().__init__()
        self.mode, self.factor = mode, factor
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.down(x))
        x = F.interpolate(x, scale_factor=self.factor, mode=self.mode)
        return self.fc(F.relu(self.up(x)).mean((2, 3)))


class Activated(nn.Module):
    """conv-BN-`act`-conv-`act`-pool-fc, with `act` a module (a fresh one per call, or one shared
    module) or a function: how users write SiLU/Hardswish/LeakyReLU networks."""

    def __init__(self, act, num_classes: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)
        if isinstance(act, nn.Module):
            self.act1, self.act2 = act, copy.deepcopy(act)
        else:
            self.act1 = self.act2 = act

    def forward(self, x: Tensor) -> Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        return self.fc(self.act2(self.conv2(x)).mean((2, 3)))


class Shared(nn.Module):
    """One conv module called twice (shared weights): costed once if accepted."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem(x))
        x = F.relu(self.body(F.relu(self.body(x))))
        return self.fc(x.mean((2, 3)))


def silu_net(num_classes: int = 4) -> nn.Module:
    return Activated(nn.SiLU(), num_classes)
