# SPDX-License-Identifier: Apache-2.0
"""Read a traced float network: what each node is, and where the quantized forms quantize.

Every node of the traced graph gets a *kind*:

- `conv` (an `nn.Conv2d`, with the `nn.BatchNorm2d` that alone reads it folded in: kind `bn`),
  `linear` (an `nn.Linear` on a flattened [N, F] tensor: the classifier, a 1x1 conv);
- `act` (ReLU, ReLU6): a PaCT quantizer in the quantized forms (its clamp at 0 is the ReLU);
- `add` (a residual add of two tensors): `QuantAdd`, both addends on one shared quantizer;
- `gpool` (global average pooling, any spelling): `QuantAvgPool2d`, which quantizes its input;
- `cat` (concatenation), `keep` (operations that only move or select values: max pooling,
  flatten/view/reshape, transpose/permute, chunk/split/getitem, dropout, identity): unchanged,
  and values on a quantizer's grid stay on it;
- `float` (local average pooling): unchanged, its output is re-quantized where a conv reads it;
- `meta` (sizes and integer arithmetic on them), `input`, `output`: unchanged.

Anything else (hard-swish, sigmoid gates, layer norm, attention, a BatchNorm that no conv
precedes) raises `ConversionError` naming the node and its operation.

Where the quantized forms quantize (odimo's own models put a PaCT quantizer before every
conv, on every residual add and before global pooling): each ReLU is a quantizer; a conv reads
its input on the grid of the quantizer that produced it (through max pooling, reshapes,
dropout); where a conv reads a tensor that is on no grid (the image, a BatchNorm output, a
sum), a quantizer is inserted before it (one per tensor, shared by every conv reading it).
Tensors joined by a concatenation share ONE quantizer, so the joined tensor is on one grid. A
residual add shares the quantizer of its already-quantized addend (as odimo's ResNet shares
conv1's input clip) or gets its own. An inserted quantizer on a tensor that can be negative in
the float network (a linear bottleneck, a normalised image) clamps it at 0, as DIANA's unsigned
activations require: `Analysis.rectified` lists them, and the search and fine-tune absorb it.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from odimo.convert.activations import activation_hint, activation_name
from odimo.convert.trace import ConversionError, holds_tensors, is_tensor, shape
from odimo.nn.conv import Conv2dBN, QuantConv2d

ACT_FUNCTIONS = (F.relu, F.relu_, torch.relu, torch.relu_, F.relu6)
ACT_METHODS = ("relu", "relu_")
ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
ADD_METHODS = ("add", "add_")
CAT_FUNCTIONS = (torch.cat, torch.concat, torch.concatenate)
KEEP_MODULES = (
    nn.MaxPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
    nn.ChannelShuffle,
)
KEEP_FUNCTIONS = (
    F.max_pool2d,
    F.adaptive_max_pool2d,
    F.dropout,
    torch.flatten,
    torch.reshape,
    torch.transpose,
    torch.permute,
    torch.chunk,
    torch.split,
    torch.squeeze,
    torch.unsqueeze,
    torch.channel_shuffle,
    operator.getitem,
)
KEEP_METHODS = (
    "view",
    "reshape",
    "flatten",
    "transpose",
    "permute",
    "contiguous",
    "chunk",
    "split",
    "squeeze",
    "unsqueeze",
    "unflatten",
)
AVG_MODULES = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
AVG_FUNCTIONS = (F.avg_pool2d, F.adaptive_avg_pool2d, torch.mean)
GENERIC_HINT = (
    "odimo converts convs, BatchNorm, ReLU/ReLU6, linear classifiers, residual adds, pooling, "
    "concatenation and reshapes: replace it, or keep this network float (see docs/convert.md)"
)
HINTS = {
    (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d, nn.LocalResponseNorm): (
        "only BatchNorm right after a conv folds into a DIANA conv: replace the normalisation "
        "by BatchNorm2d after each conv, or keep this network float"
    ),
    (nn.MultiheadAttention, nn.Softmax, nn.Transformer, nn.TransformerEncoderLayer): (
        "attention has no mapping on DIANA's conv units: keep this network float, or convert "
        "its convolutional part only"
    ),
}


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """`<op> <what>` of a node, as error messages name it."""
    if node.op == "call_module":
        return f"{type(modules[node.target]).__name__} module {node.target!r}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        name = getattr(node.target, "__name__", str(node.target))
        module = getattr(node.target, "__module__", None) or ""
        return f"{module + '.' if module and module != '_operator' else ''}{name}".replace(
            "torch._C._nn.", "torch.nn.functional."
        )
    return f"{node.op} {node.target!r}"


def refuse(node: fx.Node, modules: dict[str, nn.Module], reason: str) -> ConversionError:
    """The one-line error for an operation the converter cannot take."""
    return ConversionError(
        f"cannot convert node {node.name!r} ({describe(node, modules)}): {reason}"
    )


def _hint(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    activation = activation_name(node, modules)
    if activation is not None:
        return activation_hint(activation)
    if node.op == "call_module":
        for types, hint in HINTS.items():
            if isinstance(modules[node.target], types):
                return hint
    target = node.target
    if target in (operator.mul, torch.mul, "mul", "mul_", operator.imul):
        return (
            "an elementwise product of activations (e.g. a squeeze-excitation gate) has no "
            "quantized form on DIANA: remove the gate, or keep this network float"
        )
    if target in (
        F.layer_norm,
        F.softmax,
        torch.softmax,
        "softmax",
        torch.matmul,
        "matmul",
        operator.matmul,
        torch.bmm,
        F.scaled_dot_product_attention,
    ):
        return "attention and layer norm have no mapping on DIANA: keep this network float"
    return GENERIC_HINT


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.all_input_nodes if holds_tensors(a)]


def _spatial_dims(dims, ndim: int) -> set[int]:
    dims = dims if isinstance(dims, (tuple, list)) else [dims]
    return {d % ndim for d in dims if isinstance(d, int)}


def _is_global_avg(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Average pooling over the whole feature map (at this input size)."""
    x = _tensor_args(node)[0]
    s_in, s_out = shape(x), shape(node)
    if len(s_in) != 4 or s_out not in ((1, s_in[1], 1, 1), (1, s_in[1])):
        return False
    target = node.target
    if node.op == "call_module":
        m = modules[target]
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return True
        k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * 2
        pad = m.padding if isinstance(m.padding, tuple) else (m.padding,) * 2
        return tuple(k) == tuple(s_in[2:]) and tuple(pad) == (0, 0)
    if target is F.adaptive_avg_pool2d:
        return True
    if target is F.avg_pool2d:
        k = node.args[1] if len(node.args) > 1 else node.kwargs.get("kernel_size")
        k = tuple(k) if isinstance(k, (tuple, list)) else (k, k)
        return k == tuple(s_in[2:]) and not node.kwargs.get("padding", 0)
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return _spatial_dims(dims, 4) == {2, 3}


def _check_upsampling(node: fx.Node, modules: dict[str, nn.Module], mode: str) -> str:
    """`keep` for nearest upsampling by integer factors (it only copies values, so they stay
    on their 7-bit grid); anything else computes new values DIANA has no operation for."""
    s_in, s_out = shape(_tensor_args(node)[0]), shape(node)
    integer = len(s_in) == 4 and all(o % i == 0 for i, o in zip(s_in[2:], s_out[2:]))
    if mode in ("nearest", "nearest-exact") and integer and s_out[:2] == s_in[:2]:
        return "keep"
    raise refuse(
        node,
        modules,
        f"mode={mode!r} from {list(s_in[2:])} to {list(s_out[2:])}: only nearest upsampling by "
        "integer factors converts (it copies values; other modes and factors compute new ones "
        "that no DIANA operation makes): use mode='nearest' with an integer scale_factor, or "
        "a transposed conv's float model",
    )


def _check_index(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """Slicing and integer indexing select values (`keep`); indexing with a tensor (a mask or
    a gather) selects data-dependent elements and is refused."""
    index = node.args[1] if len(node.args) > 1 else None
    parts = index if isinstance(index, (tuple, list)) else (index,)
    for part in parts:
        if isinstance(part, fx.Node) and is_tensor(part):
            raise refuse(
                node,
                modules,
                "indexing with a tensor (a mask or a gather) selects data-dependent elements: "
                "slice with constants (x[:, :8], x[:, 8:]), or keep this network float",
            )
    return "keep" if holds_tensors(node) else "meta"


def _classify_module(node: fx.Node, modules: dict[str, nn.Module], kinds: dict[str, str]) -> str:
    m = modules[node.target]
    if isinstance(m, (QuantConv2d, Conv2dBN)):
        raise refuse(node, modules, "it is an odimo layer already: build odimo models directly")
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise refuse(node, modules, f"padding_mode={m.padding_mode!r}: DIANA pads with zeros")
        return "conv"
    if isinstance(m, nn.BatchNorm2d):
        src = node.args[0]
        if kinds.get(src.name) == "conv" and len(src.users) == 1 and m.track_running_stats:
            return "bn"
        raise refuse(
            node,
            modules,
            "only a BatchNorm2d that alone reads a conv's output (with running statistics) "
            "folds into that conv: move it right after a conv, or keep this network float",
        )
    if isinstance(m, nn.Linear):
        if len(shape(node.args[0])) != 2:
            raise refuse(
                node,
                modules,
                f"a Linear on a {len(shape(node.args[0]))}-D tensor (token or attention MLP); "
                "only a classifier on a flattened [N, F] tensor converts (as a 1x1 conv)",
            )
        return "linear"
    if isinstance(m, (nn.ReLU, nn.ReLU6)) or (
        isinstance(m, nn.Hardtanh) and m.min_val == 0 and m.max_val > 0
    ):
        return "act"
    if isinstance(m, KEEP_MODULES):
        if getattr(m, "return_indices", False):
            raise refuse(node, modules, "max pooling that returns indices: " + GENERIC_HINT)
        return "keep"
    if isinstance(m, AVG_MODULES):
        return "gpool" if _is_global_avg(node, modules) else "float"
    if isinstance(m, nn.Upsample):
        return _check_upsampling(node, modules, str(m.mode))
    raise refuse(node, modules, _hint(node, modules))


def _classify_call(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    target = node.target
    fn = node.op == "call_function"
    if (fn and target in ACT_FUNCTIONS) or (not fn and target in ACT_METHODS):
        return "act"
    if (fn and target in ADD_FUNCTIONS) or (not fn and target in ADD_METHODS):
        args = [a for a in node.args[:2] if isinstance(a, fx.Node) and is_tensor(a)]
        if len(args) != 2 or "alpha" in node.kwargs or shape(args[0]) != shape(args[1]):
            raise refuse(
                node,
                modules,
                "only the sum of two activations of one shape (a residual add) converts; a "
                "constant or broadcast addend has no quantized form",
            )
        return "add"
    if fn and target in CAT_FUNCTIONS:
        return "cat"
    if fn and target is operator.getitem and holds_tensors(node.args[0]):
        return _check_index(node, modules)
    if fn and target is F.interpolate:
        mode = node.args[3] if len(node.args) > 3 else node.kwargs.get("mode", "nearest")
        return _check_upsampling(node, modules, str(mode))
    if (fn and target in KEEP_FUNCTIONS) or (not fn and target in KEEP_METHODS):
        return "keep" if holds_tensors(node) else "meta"
    if (fn and target in AVG_FUNCTIONS) or (not fn and target == "mean"):
        if _is_global_avg(node, modules):
            return "gpool"
        if target in (F.avg_pool2d, F.adaptive_avg_pool2d):
            return "float"
        raise refuse(node, modules, "a mean over other dimensions than the feature map's")
    if not holds_tensors(node):
        return "meta"
    raise refuse(node, modules, _hint(node, modules))


def classify(gm: fx.GraphModule) -> dict[str, str]:
    """The kind of every node (see module doc); `ConversionError` for the first unsupported one."""
    modules = dict(gm.named_modules())
    kinds: dict[str, str] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if any(k == "input" for k in kinds.values()):
                raise refuse(node, modules, "the network takes several inputs; odimo feeds one")
            kinds[node.name] = "input"
        elif node.op == "output":
            kinds[node.name] = "output"
        elif node.op == "call_module":
            kinds[node.name] = _classify_module(node, modules, kinds)
        elif node.op in ("call_function", "call_method"):
            kinds[node.name] = _classify_call(node, modules)
        else:
            raise refuse(
                node,
                modules,
                "the forward reads a parameter or buffer directly (a functional layer): use "
                "nn.Conv2d / nn.Linear / nn.BatchNorm2d modules",
            )
    return kinds
