# SPDX-License-Identifier: Apache-2.0
"""Write the float, search or mapped form of a classified graph as an `fx.GraphModule`.

Names: every conv and linear layer keeps its module path in the source network (so mappings,
reports and the float-to-quantized folding speak of `layer1.0.conv1`); the BatchNorm of a conv
becomes its `.bn`. A quantizer is named after the ReLU it replaces (`layer1.0.relu`, a second
call of the same ReLU `layer1.0.relu_1`), `input_act` for the image, `<layer>_act` when
inserted before a layer; a residual add or global pool is named after the node
(`layer1.0.add`) and holds its quantizer as `.act`.
"""

from __future__ import annotations

import copy
from fnmatch import fnmatch

import torch
from torch import fx, nn

from odimo.convert.layers import LinearAsConv2d, shape_like
from odimo.convert.plan import QuantPlan
from odimo.convert.trace import shape
from odimo.nn.factory import FloatOps, QuantOps


class _Writer:
    """A new graph plus the modules its call_module nodes name."""

    def __init__(self, source: fx.GraphModule):
        self.source = source
        self.modules = dict(source.named_modules())
        self.graph = fx.Graph()
        self.root: dict[str, nn.Module] = {}
        self.env: dict[str, fx.Node] = {}

    def call(self, path: str, module: nn.Module, args: tuple) -> fx.Node:
        self.root.setdefault(path, module)
        return self.graph.call_module(path, args)

    def copy(self, node: fx.Node) -> fx.Node:
        """The node unchanged (its module, if any, deep-copied from the source)."""
        if node.op == "call_module" and node.target not in self.root:
            self.root[node.target] = copy.deepcopy(self.modules[node.target])
        new = self.graph.node_copy(node, lambda n: self.env[n.name])
        self.env[node.name] = new
        return new

    def module(self, name: str) -> fx.GraphModule:
        gm = fx.GraphModule(self.root, self.graph, class_name=name)
        gm.graph.lint()
        return gm


def is_fixed(name: str, fixed: tuple[str, ...]) -> bool:
    """Whether a layer's mapping is fixed by the user (`fixed` holds fnmatch patterns)."""
    return any(fnmatch(name, pattern) for pattern in fixed)


def _bn_of(node: fx.Node, kinds: dict[str, str]) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 and kinds.get(users[0].name) == "bn" else None


@torch.no_grad()
def _float_conv(w: _Writer, node: fx.Node, kinds: dict[str, str], fixed) -> None:
    src = w.modules[node.target]
    bn = _bn_of(node, kinds)
    if bn is None:
        layer = copy.deepcopy(src)
    else:
        k, s = src.kernel_size[0], src.stride[0]
        layer = FloatOps().conv(src.in_channels, src.out_channels, k, s, src.groups, act=None)
        shape_like(layer, src).to(src.weight.device)
        layer.weight = nn.Parameter(src.weight.detach().clone())
        if src.bias is not None:
            layer.bias = nn.Parameter(src.bias.detach().clone())
        layer.bn = copy.deepcopy(w.modules[bn.target])
        if not layer.bn.affine:  # folding needs a weight and a bias: the identity affine
            layer.bn.weight = nn.Parameter(torch.ones_like(layer.bn.running_var))
            layer.bn.bias = nn.Parameter(torch.zeros_like(layer.bn.running_var))
    layer.searchable = not is_fixed(node.target, fixed)
    out = w.call(node.target, layer, (w.env[node.args[0].name],))
    w.env[node.name] = out
    if bn is not None:
        w.env[bn.name] = out


def _linear(w: _Writer, node: fx.Node, x: fx.Node, layer: nn.Conv2d) -> None:
    """A linear classifier as a 1x1 conv: [N, F] -> [N, F, 1, 1] -> conv -> [N, n]."""
    src = w.modules[node.target]
    x4 = w.graph.call_method("reshape", (x, (-1, src.in_features, 1, 1)))
    y4 = w.call(node.target, layer, (x4,))
    w.env[node.name] = w.graph.call_function(torch.flatten, (y4, 1))


def write_float(source: fx.GraphModule, kinds: dict[str, str], fixed, name: str):
    """The float form: the source graph with conv+BN as `Conv2dBN`, linear as a 1x1 conv.

    It computes exactly what the source computes (same kernels, same order of operations).
    """
    w = _Writer(source)
    for node in source.graph.nodes:
        kind = kinds[node.name]
        if kind == "conv":
            _float_conv(w, node, kinds, fixed)
        elif kind == "bn":
            continue  # folded into its conv (env set there)
        elif kind == "linear":
            layer = LinearAsConv2d.from_linear(w.modules[node.target])
            layer.searchable = not is_fixed(node.target, fixed)
            _linear(w, node, w.env[node.args[0].name], layer)
        else:
            w.copy(node)
    return w.module(name)


class _Names:
    """Unique module paths for the quantized form's new modules."""

    def __init__(self, reserved: set[str]):
        self.used = set(reserved)

    def take(self, base: str) -> str:
        name, i = base, 0
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name


def _node_path(node: fx.Node, base: str) -> str:
    """`<innermost module path>.<base>` for a function/method node (its place in the source)."""
    stack = node.meta.get("nn_module_stack") or {}
    prefix = list(stack)[-1] if stack else ""
    return f"{prefix}.{base}" if prefix else base


class _QuantWriter(_Writer):
    """Writes the search or mapped form: odimo's quantized layers from the layer factory."""

    def __init__(self, source, kinds, plan: QuantPlan, ops: QuantOps, fixed):
        super().__init__(source)
        self.kinds, self.plan, self.ops, self.fixed = kinds, plan, ops, fixed
        reserved = {
            n.target
            for n in source.graph.nodes
            if n.op == "call_module" and kinds[n.name] not in ("act", "gpool", "bn")
        }
        self.names = _Names(reserved)
        self.quant: dict[str, nn.Module] = {}  # class root -> its quantizer
        self.paths: dict[str, str] = {}  # class root -> module path (directly called classes)
        self.inserted: dict[str, fx.Node] = {}  # node name -> its quantized value

    def quantizer(self, cls: str) -> nn.Module:
        root = self.plan.root(cls)
        if root not in self.quant:
            image = root in self.plan.from_input
            self.quant[root] = self.ops.input_act() if image else self.ops.act()
        return self.quant[root]

    def path(self, cls: str, node: fx.Node, consumer: str | None = None) -> str:
        root = self.plan.root(cls)
        if root not in self.paths:
            if root.startswith("in:"):
                base = "input_act" if root in self.plan.from_input else f"{consumer}_act"
            elif node.op == "call_module":
                base = node.target
            else:
                base = _node_path(node, getattr(node.target, "__name__", str(node.target)))
            self.paths[root] = self.names.take(base)
        return self.paths[root]

    def layer_input(self, node: fx.Node, x: fx.Node) -> tuple[fx.Node, nn.Module]:
        """The conv's input node (quantized here if it is on no grid) and its quantizer."""
        cls = self.plan.layer_quant[node.name]
        q = self.quantizer(cls)
        if self.plan.on_grid(x) is not None:
            return self.env[x.name], q
        if x.name not in self.inserted:
            path = self.path(cls, x, consumer=node.target)
            self.inserted[x.name] = self.call(path, q, (self.env[x.name],))
        return self.inserted[x.name], q

    def conv(self, node: fx.Node) -> None:
        src = self.modules[node.target]
        x, q = self.layer_input(node, node.args[0])
        searchable = not is_fixed(node.target, self.fixed)
        k, s = src.kernel_size[0], src.stride[0]
        layer = self.ops.conv(
            src.in_channels, src.out_channels, k, s, src.groups, act=q, searchable=searchable
        )
        out = self.call(node.target, shape_like(layer, src), (x,))
        self.env[node.name] = out
        bn = _bn_of(node, self.kinds)
        if bn is not None:
            self.env[bn.name] = out

    def linear(self, node: fx.Node) -> None:
        src = self.modules[node.target]
        x, q = self.layer_input(node, node.args[0])
        searchable = not is_fixed(node.target, self.fixed)
        output = any(user.op == "output" for user in node.users)  # the logits
        layer = self.ops.classifier(
            src.in_features, src.out_features, act=q, searchable=searchable, output=output
        )
        _linear(self, node, x, layer)

    def act(self, node: fx.Node, x: fx.Node) -> None:
        if self.plan.on_grid(x) is not None:  # already quantized: the ReLU is a no-op there
            self.env[node.name] = self.env[x.name]
            return
        cls = self.plan.grid[node.name]
        self.env[node.name] = self.call(
            self.path(cls, node), self.quantizer(cls), (self.env[x.name],)
        )

    def add(self, node: fx.Node, a: fx.Node, b: fx.Node) -> None:
        q = self.quantizer(self.plan.add_quant[node.name])
        path = self.names.take(_node_path(node, "add"))
        self.env[node.name] = self.call(path, self.ops.add(q), (self.env[a.name], self.env[b.name]))

    def pool(self, node: fx.Node, x: fx.Node) -> None:
        q = self.quantizer(self.plan.pool_quant[node.name])
        base = node.target if node.op == "call_module" else _node_path(node, "pool")
        out = self.call(self.names.take(base), self.ops.pool(q), (self.env[x.name],))
        if len(shape(node)) == 2:  # mean without keepdim: [N, C]
            out = self.graph.call_function(torch.flatten, (out, 1))
        self.env[node.name] = out


def write_quantized(
    source: fx.GraphModule, kinds: dict[str, str], plan: QuantPlan, ops: QuantOps, fixed, name: str
) -> fx.GraphModule:
    """The search or mapped form (by `ops`): see the module doc for where quantizers go."""
    w = _QuantWriter(source, kinds, plan, ops, fixed)
    for node in source.graph.nodes:
        kind = kinds[node.name]
        tensors = [a for a in node.all_input_nodes if "tensor_meta" in a.meta]
        if kind == "conv":
            w.conv(node)
        elif kind == "linear":
            w.linear(node)
        elif kind == "bn":
            continue
        elif kind == "act":
            w.act(node, tensors[0])
        elif kind == "add":
            w.add(node, *[a for a in node.args[:2]])
        elif kind == "gpool":
            w.pool(node, tensors[0])
        else:
            w.copy(node)
    return w.module(name)
