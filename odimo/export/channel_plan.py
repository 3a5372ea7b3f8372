# SPDX-License-Identifier: Apache-2.0
"""Split a mapped network into real per-unit convolutions, with every channel permutation
absorbed into weights (no gather at run time).

Channel spaces. The network is traced once (torch.fx, with odimo's layers as leaves) and every
tensor gets a *channel space*: the ordering its channels are stored in. Channel-wise operations
(activation quantizers, residual adds, average pooling, depthwise convs, flatten) do not mix
channels, so their inputs and output share one space; an ordinary conv (groups=1) reads one
space and writes a new one. In a ResNet stage, the stem/downsample output, every block's
`conv2` output and every add output therefore form ONE space; in a MobileNet block the
pointwise output and the next depthwise conv share one.

The rule (one order per space):
- the network's input and output spaces are pinned to the original order (the data is fed as
  it is; the classes come out in their original order);
- otherwise the channels are sorted by their *signature*, the tuple of units the space's
  producers (its groups=1 convs, in execution order) assign to them, in reflected
  (boustrophedon, Gray-code-like) order. The first producer thus gets the plain layout
  "first unit's channels, then the second's" (digital first on DIANA); with one producer that
  is all there is. Later producers of the same space (the other addends of a residual add)
  must follow that order: their unit channels come out in a few contiguous runs, which
  `SplitConv2d` joins with static slices + one concat (a producer of a pinned space likewise).
  The reflected order keeps those runs few (e.g. at most 3 for a second producer on 2 units).
- a conv reading a space stores its weight's input columns in that space's order; a depthwise
  conv in a space stores its channels in that order (and must run on one unit);
  per-tensor quantizers need nothing.
- any other operation (flatten, reshape, concatenation, chunk, a channel shuffle, ...) may move
  channels: its inputs and its output are pinned to the original order, so it computes on the
  tensors it was written for (networks converted by `odimo.convert` use them freely).

Every order is applied to weights at export time; the split network's forward contains convs,
activation quantizers, adds, pooling, static slices and concats only.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from odimo.errors import ConfigError
from odimo.hw.platform import Platform
from odimo.nn.conv import MappedConv2d
from odimo.nn.mapping import quant_layers
from odimo.nn.operator_split import SplitOperatorConv2d
from odimo.nn.split import ExportActQuant, SplitConv2d
from odimo.quant import FloatAdd, FloatAvgPool2d, QuantAdd, QuantAvgPool2d, UintActPact

#: Modules that never mix channels: their inputs and output share one channel space.
CHANNELWISE_MODULES = (
    UintActPact,
    ExportActQuant,
    QuantAdd,
    QuantAvgPool2d,
    FloatAdd,
    FloatAvgPool2d,
    nn.ReLU,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.Dropout,
)
CHANNELWISE_FUNCTIONS = (
    operator.add,
    operator.iadd,
    torch.add,
    torch.relu,
    nn.functional.relu,
    nn.functional.max_pool2d,
    nn.functional.avg_pool2d,
)
CHANNELWISE_METHODS = ("add", "relu", "contiguous")


@dataclass
class ChannelSpace:
    """One channel ordering shared by tensors that only meet channel-wise.

    Attributes:
        size: number of channels.
        pinned: the network's input or output: kept in the original order.
        producers: groups=1 convs writing this space, in execution order.
        passes: depthwise convs reading and writing this space.
        consumers: groups=1 convs reading this space.
        order: original channel stored at each position.
    """

    size: int = 0
    pinned: bool = False
    producers: list[str] = field(default_factory=list)
    passes: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    order: tuple[int, ...] = ()

    @property
    def is_identity(self) -> bool:
        return self.order == tuple(range(self.size))


@dataclass
class ChannelPlan:
    """The channel space of every conv's input and output."""

    spaces: list[ChannelSpace]
    input_space: dict[str, int]
    output_space: dict[str, int]

    def in_order(self, name: str) -> tuple[int, ...]:
        return self.spaces[self.input_space[name]].order

    def out_order(self, name: str) -> tuple[int, ...]:
        return self.spaces[self.output_space[name]].order


class _LeafTracer(fx.Tracer):
    """Traces a network down to odimo's layers (convs, quantizers, adds, pooling)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (nn.Conv2d, *CHANNELWISE_MODULES)) or super().is_leaf_module(
            m, module_qualified_name
        )


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def reflected_order(assignments: list[list[int]], num_units: int) -> tuple[int, ...]:
    """Channels sorted by their signature (unit of each producer) in reflected order.

    The first producer's units are the major key (its channels come out unit by unit); each
    further digit runs forwards or backwards depending on the parity of the prefix's rank, so
    neighbouring groups differ in as few producers as possible. Ties keep the channel order.
    """
    size = len(assignments[0]) if assignments else 0

    def key(c: int) -> tuple[tuple[int, ...], int]:
        digits, rank = [], 0
        for a in assignments:
            d = a[c] if rank % 2 == 0 else num_units - 1 - a[c]
            digits.append(d)
            rank = rank * num_units + d
        return tuple(digits), c

    return tuple(sorted(range(size), key=key))


def _trace(model: nn.Module) -> fx.Graph:
    try:
        return _LeafTracer().trace(model)
    except Exception as err:  # noqa: BLE001 - report any tracing failure the same way
        raise ConfigError(f"cannot trace {type(model).__name__} for export: {err}") from None


def plan_channels(model: nn.Module, num_units: int | None = None) -> ChannelPlan:
    """Channel spaces of a mapped network and the order chosen for each (see module doc)."""
    graph = _trace(model)
    modules = dict(model.named_modules())
    uf = _UnionFind()
    pinned: set[str] = set()
    convs: list[tuple[str, str, str]] = []  # (layer name, input node, output node)
    for node in graph.nodes:
        inputs = [a.name for a in node.all_input_nodes]
        uf.find(node.name)
        target = node.target
        if node.op == "placeholder":
            pinned.add(node.name)
        elif node.op == "output":
            pinned.update(inputs)
        elif node.op == "call_module" and isinstance(modules[target], nn.Conv2d):
            layer = modules[target]
            if not isinstance(layer, MappedConv2d):
                raise ConfigError(
                    f"layer {target!r} is a {type(layer).__name__}: export needs "
                    "the mapped form (odimo.models.to_mapped)"
                )
            convs.append((target, inputs[0], node.name))
            if layer.groups != 1:
                if layer.groups != layer.in_channels or layer.groups != layer.out_channels:
                    raise ConfigError(
                        f"layer {target!r}: grouped convs other than depthwise cannot be exported"
                    )
                uf.union(node.name, inputs[0])
        elif (
            (node.op == "call_module" and isinstance(modules[target], CHANNELWISE_MODULES))
            or (node.op == "call_function" and target in CHANNELWISE_FUNCTIONS)
            or (node.op == "call_method" and target in CHANNELWISE_METHODS)
        ):
            for name in inputs:
                uf.union(node.name, name)
        else:  # may move channels (flatten, reshape, cat, shuffle): keep the original order
            pinned.update(inputs)
            pinned.add(node.name)
    return _assign_orders(modules, uf, pinned, convs, num_units)


def _assign_orders(
    modules: dict[str, nn.Module],
    uf: _UnionFind,
    pinned: set[str],
    convs: list[tuple[str, str, str]],
    num_units: int | None,
) -> ChannelPlan:
    roots: dict[str, int] = {}
    spaces: list[ChannelSpace] = []

    def space_of(node: str) -> int:
        root = uf.find(node)
        if root not in roots:
            roots[root] = len(spaces)
            spaces.append(ChannelSpace())
        return roots[root]

    input_space, output_space = {}, {}
    for name, src, dst in convs:
        layer = modules[name]
        i, o = space_of(src), space_of(dst)
        input_space[name], output_space[name] = i, o
        for s, size in ((i, layer.in_channels), (o, layer.out_channels)):
            if spaces[s].size not in (0, size):
                raise ConfigError(
                    f"layer {name!r}: channel counts disagree within a space "
                    f"({spaces[s].size} vs {size})"
                )
            spaces[s].size = size
        if layer.groups == 1:
            spaces[i].consumers.append(name)
            spaces[o].producers.append(name)
        else:
            spaces[o].passes.append(name)
    for node in pinned:
        if uf.find(node) in roots:
            spaces[roots[uf.find(node)]].pinned = True
    keys = _space_keys(modules, spaces, convs, input_space, output_space)
    for s, space in enumerate(spaces):
        if space.pinned or not keys[s]:
            space.order = tuple(range(space.size))
        else:
            units = num_units or modules[keys[s][0]].platform.num_units
            space.order = reflected_order([modules[p].assignment.tolist() for p in keys[s]], units)
    return ChannelPlan(spaces, input_space, output_space)


def _space_keys(
    modules: dict[str, nn.Module],
    spaces: list[ChannelSpace],
    convs: list[tuple[str, str, str]],
    input_space: dict[str, int],
    output_space: dict[str, int],
) -> list[list[str]]:
    """The layers whose assignments sort each space: its producers, except that the input and
    output spaces of operator-choice layers (Darkside's slots) are linked into groups sorted by
    one key, the group's choice layers then its other producers. A depthwise unit's channel c
    reads input channel c, so with one order on both sides its share reads its input channels
    in the order it writes them: a few contiguous slices instead of one per channel run."""
    uf = _UnionFind()
    choice = [n for n, _, _ in convs if getattr(modules[n], "operator_choice", False)]
    for name in choice:
        if spaces[input_space[name]].size == spaces[output_space[name]].size:
            uf.union(str(input_space[name]), str(output_space[name]))
    groups: dict[str, list[str]] = {}
    for name in choice:
        groups.setdefault(uf.find(str(output_space[name])), []).append(name)
    for s, space in enumerate(spaces):
        members = groups.get(uf.find(str(s)))
        if members is not None:
            members.extend(p for p in space.producers if p not in choice and p not in members)
    return [groups.get(uf.find(str(s)), space.producers) for s, space in enumerate(spaces)]


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def replace_shared(model: nn.Module, kind: type[nn.Module], make) -> None:
    """Replace every `kind` submodule by `make(module)`; a module used in several places (a
    shared activation quantizer) is replaced by ONE new module everywhere."""
    new: dict[int, nn.Module] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kind):
                if id(child) not in new:
                    new[id(child)] = make(child)
                setattr(parent, name, new[id(child)])


@torch.no_grad()
def freeze_activations(model: nn.Module) -> None:
    """Replace every `UintActPact` by an `ExportActQuant` with its constants (sharing kept)."""
    replace_shared(model, UintActPact, ExportActQuant.from_pact)


@torch.no_grad()
def split_model(mapped_model: nn.Module, platform: Platform) -> nn.Module:
    """A deep copy of a mapped model with every mapped conv a `SplitConv2d` (inference only).

    Channel orders follow `plan_channels`; activation quantizers become `ExportActQuant`
    constants. The outputs equal the mapped model's, class order included.
    """
    model = copy.deepcopy(mapped_model).eval()
    layers = quant_layers(model)
    wrong = [n for n, m in layers.items() if not isinstance(m, MappedConv2d)]
    if wrong:
        raise ConfigError(
            f"split_model needs a mapped model; {wrong[0]!r} is a "
            f"{type(layers[wrong[0]]).__name__} (use odimo.models.to_mapped)"
        )
    for name, layer in layers.items():
        if tuple(layer.dilation) != (1, 1):
            raise ConfigError(f"layer {name!r} is dilated: the split export has no dilated convs")
        if layer.platform.unit_names != platform.unit_names:
            raise ConfigError(
                f"layer {name!r} is mapped on {layer.platform.name}, not {platform.name}"
            )
    plan = plan_channels(model, platform.num_units)
    missing = [n for n in layers if n not in plan.input_space]
    if missing:
        raise ConfigError(f"layers {missing[:3]} are never called in the forward pass")
    for name, layer in layers.items():
        kind = SplitOperatorConv2d if layer.operator_choice else SplitConv2d
        split = kind.from_mapped(layer, plan.in_order(name), plan.out_order(name))
        _set_submodule(model, name, split)
    freeze_activations(model)
    model.form = "split"
    model.requires_grad_(False)
    return model


def split_layers(model: nn.Module) -> dict[str, SplitConv2d]:
    """Every split conv of a split model by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, SplitConv2d)}


__all__ = [
    "ChannelPlan",
    "ChannelSpace",
    "freeze_activations",
    "plan_channels",
    "reflected_order",
    "replace_shared",
    "split_layers",
    "split_model",
]
