# SPDX-License-Identifier: Apache-2.0
"""Three sampled architecture families: ResNet-like, MobileNetV2-like and a plain conv probe.

Each family is a `Space`: its parameters with their choices (small to large), four nested laws
`s0` (widest) to `s3` (tiniest), a `draw(law, rng)` that turns one law into the network's
constructor arguments (plain JSON values), and a `build(ops, input_size, num_classes, **args)`.
Layer names follow odimo's models: `conv1`/`input_layer`, `backbone.bb_<i>...`, `fc`.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

from torch import Tensor, nn

from odimo.nn.blocks import BasicBlock, Bottleneck, InvertedResidual, Ops
from odimo.spaces.laws import Law, nested_laws

#: Channel widths shared by the families, small to large.
WIDTHS = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
#: Most stride-2 stages of a sampled net (keeps a 32x32 input at >= 2x2 before the pool).
MAX_DOWNSAMPLE = 3


class SampledNet(nn.Module):
    """Stem conv, a sequential backbone, global average pool and a 1x1-conv classifier."""

    def __init__(
        self, ops: Ops, input_size: tuple[int, int, int], num_classes: int, stem: int, blocks
    ):
        super().__init__()
        self.input_act = ops.input_act()
        self.conv1 = ops.conv(input_size[0], stem, 3, 1, act=self.input_act)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c = stem
        for name, make, c_out in blocks:
            layers[name] = make(c)
            c = c_out
        self.backbone = nn.Sequential(layers)
        self.pool_act = ops.act()
        self.pool = ops.pool(self.pool_act)
        self.fc = ops.classifier(c, num_classes, act=self.pool_act)

    def forward(self, x: Tensor) -> Tensor:
        x = self.backbone(self.conv1(self.input_act(x)))
        return self.fc(self.pool(x)).flatten(1)


class Space(ABC):
    """A parametric family of networks with named nested laws."""

    name: str
    params: dict[str, tuple[Any, ...]]
    laws: dict[str, Law]

    @abstractmethod
    def draw(self, law: Law, rng: random.Random) -> dict[str, Any]:
        """Constructor arguments of one network (JSON values), drawn with `rng` under `law`."""

    @abstractmethod
    def build(self, ops: Ops, input_size: tuple[int, int, int], num_classes: int, **args):
        """The network of `draw`'s arguments, in the form of `ops`."""


def _strides(rng: random.Random, n: int, first: int = 1) -> list[int]:
    """Stride of each of n stages: `first` for stage 0, then 1 or 2, at most MAX_DOWNSAMPLE 2s."""
    out = [first]
    for _ in range(n - 1):
        out.append(2 if sum(s == 2 for s in out) < MAX_DOWNSAMPLE and rng.random() < 0.7 else 1)
    return out


def _draw_stages(law: Law, rng: random.Random, kind: str) -> dict[str, Any]:
    """A stem width and stages `[kind value, width, blocks, stride]` (widths never shrink)."""
    n = law.pick(rng, "stages")
    widths = sorted(law.pick(rng, "width") for _ in range(n))
    strides = _strides(rng, n)
    stages = [
        [law.pick(rng, kind), w, law.pick(rng, "blocks"), s]
        for w, s in zip(widths, strides, strict=True)
    ]
    return {"stem": law.pick(rng, "stem"), "stages": stages}


def _stage_blocks(stages, block) -> list[tuple[str, Any, int]]:
    """`(name, make(c_in), c_out)` of every block; `block(kind, c_in, width, stride)` builds one
    (the stage's stride on its first block only)."""
    blocks = []
    for i, (kind, width, depth, stride) in enumerate(stages, start=1):
        for j in range(int(depth)):
            s = int(stride) if j == 0 else 1

            def make(c, kind=kind, w=int(width), s=s):
                return block(kind, c, w, s)

            blocks.append((f"bb_{i}_{j}", make, int(width)))
    return blocks


class ResNetSpace(Space):
    """Stages of basic or bottleneck blocks; widths never shrink from one stage to the next."""

    name = "resnet"
    params = {
        "stem": WIDTHS[:7],
        "stages": (1, 2, 3, 4),
        "width": WIDTHS,
        "blocks": (1, 2, 3, 4),
        "block": ("basic", "bottleneck"),
    }
    laws = nested_laws(
        params,
        {
            "s0": {"stem": 7, "stages": 4, "width": 11, "blocks": 4, "block": 2},
            "s1": {"stem": 5, "stages": 3, "width": 9, "blocks": 3, "block": 2},
            "s2": {"stem": 4, "stages": 3, "width": 7, "blocks": 2, "block": 2},
            "s3": {"stem": 3, "stages": 2, "width": 5, "blocks": 2, "block": 1},
        },
    )

    def draw(self, law: Law, rng: random.Random) -> dict[str, Any]:
        return _draw_stages(law, rng, "block")

    def build(self, ops, input_size, num_classes, stem: int, stages) -> SampledNet:
        kinds = {"basic": BasicBlock, "bottleneck": Bottleneck}
        blocks = _stage_blocks(stages, lambda kind, c, w, s: kinds[kind](ops, c, w, s))
        return SampledNet(ops, input_size, num_classes, int(stem), blocks)


class MobileNetV2Space(Space):
    """Stages of inverted residual blocks (expansion, width, blocks, stride per stage)."""

    name = "mobilenetv2"
    params = {
        "stem": WIDTHS[:6],
        "stages": (1, 2, 3, 4, 5),
        "expansion": (1, 2, 3, 4, 6),
        "width": WIDTHS[:10],
        "blocks": (1, 2, 3, 4),
    }
    laws = nested_laws(
        params,
        {
            "s0": {"stem": 6, "stages": 5, "expansion": 5, "width": 10, "blocks": 4},
            "s1": {"stem": 5, "stages": 4, "expansion": 4, "width": 8, "blocks": 3},
            "s2": {"stem": 4, "stages": 3, "expansion": 3, "width": 6, "blocks": 2},
            "s3": {"stem": 3, "stages": 2, "expansion": 2, "width": 4, "blocks": 2},
        },
    )

    def draw(self, law: Law, rng: random.Random) -> dict[str, Any]:
        return _draw_stages(law, rng, "expansion")

    def build(self, ops, input_size, num_classes, stem: int, stages) -> SampledNet:
        blocks = _stage_blocks(stages, lambda t, c, w, s: InvertedResidual(ops, c, w, s, int(t)))
        return SampledNet(ops, input_size, num_classes, int(stem), blocks)


class ConvLayer(nn.Module):
    """One plain conv of the probe net (act then conv)."""

    def __init__(self, ops: Ops, c_in: int, c_out: int, k: int, stride: int):
        super().__init__()
        self.act = ops.act()
        self.conv = ops.conv(c_in, c_out, k, stride, act=self.act)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.act(x))


class ProbeSpace(Space):
    """A plain stack of convs: width, kernel size and stride of each layer."""

    name = "probe"
    params = {
        "stem": WIDTHS[:6],
        "layers": (1, 2, 3, 4, 5, 6),
        "width": WIDTHS,
        "kernel": (1, 3, 5, 7),
    }
    laws = nested_laws(
        params,
        {
            "s0": {"stem": 6, "layers": 6, "width": 11, "kernel": 4},
            "s1": {"stem": 5, "layers": 5, "width": 9, "kernel": 3},
            "s2": {"stem": 4, "layers": 4, "width": 7, "kernel": 3},
            "s3": {"stem": 3, "layers": 3, "width": 5, "kernel": 2},
        },
    )

    def draw(self, law: Law, rng: random.Random) -> dict[str, Any]:
        n = law.pick(rng, "layers")
        strides = _strides(rng, n, first=rng.choice((1, 2)))
        convs = [[law.pick(rng, "width"), law.pick(rng, "kernel"), s] for s in strides]
        return {"stem": law.pick(rng, "stem"), "convs": convs}

    def build(self, ops, input_size, num_classes, stem: int, convs) -> SampledNet:
        blocks = []
        for i, (width, k, stride) in enumerate(convs, start=1):

            def make(c, w=int(width), k=int(k), s=int(stride)):
                return ConvLayer(ops, c, w, k, s)

            blocks.append((f"bb_{i}", make, int(width)))
        return SampledNet(ops, input_size, num_classes, int(stem), blocks)


SPACES: dict[str, Space] = {s.name: s for s in (ResNetSpace(), MobileNetV2Space(), ProbeSpace())}
