# SPDX-License-Identifier: Apache-2.0
"""Graph rewrites before classification: zero padding folded into convs, shared layers refused.

- `F.pad` with zeros, symmetric per axis, read only by convs (that read nothing else) becomes
  part of those convs' padding: DIANA's convs pad with zeros, so the result is the same
  convolution. Other padding (asymmetric, on channels, non-zero, read by a non-conv) is refused
  in one line, since the convs of the quantized forms cannot hold it.
- A conv or linear module called more than once (shared weights) is refused: odimo maps and
  costs each layer once, so a second call would run unmapped and uncosted.
"""

from __future__ import annotations

from collections import defaultdict

import torch.nn.functional as F
from torch import fx, nn

from odimo.convert.layers import int_padding
from odimo.convert.trace import ConversionError


def refuse_shared_layers(gm: fx.GraphModule) -> None:
    """One line for the first conv/linear module that the forward calls more than once."""
    modules = dict(gm.named_modules())
    calls: dict[str, list[str]] = defaultdict(list)
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], (nn.Conv2d, nn.Linear)):
            calls[node.target].append(node.name)
    for target, nodes in calls.items():
        if len(nodes) > 1:
            kind = type(modules[target]).__name__
            raise ConversionError(
                f"cannot convert {kind} module {target!r}: the forward calls it {len(nodes)} "
                f"times (nodes {', '.join(nodes)}), and odimo maps and costs each layer once: "
                "give each call its own module (copy the weights if they must start equal), "
                "or keep this network float"
            )


def _pad_args(node: fx.Node) -> tuple[tuple, str, float]:
    pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
    mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
    value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value")
    return tuple(pad) if isinstance(pad, (tuple, list)) else (pad,), mode, value or 0.0


def _fold_reason(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """Why a pad cannot fold into its convs, or None if it can."""
    pad, mode, value = _pad_args(node)
    if mode != "constant" or value != 0 or not all(isinstance(p, int) for p in pad):
        return f"padding mode={mode!r} value={value!r}: only constant zero padding folds"
    if len(pad) not in (2, 4) or min(pad) < 0:
        return f"padding {pad} touches other dimensions than height and width, or crops"
    if pad[0] != pad[1] or (len(pad) == 4 and pad[2] != pad[3]):
        return f"padding {pad} is asymmetric, and DIANA's convs pad both sides alike"
    for user in node.users:
        m = modules.get(user.target) if user.op == "call_module" else None
        if not isinstance(m, nn.Conv2d) or m.padding_mode != "zeros":
            return f"node {user.name!r} reads it and is not a zero-padding conv"
    return None


def fold_pads(gm: fx.GraphModule) -> list[str]:
    """Fold foldable `F.pad` nodes into the convs that read them; refuse the others.

    Runs after `refuse_shared_layers`, so each conv module has one call and changing its
    padding changes nothing else. Returns the folded nodes' names.
    """
    modules = dict(gm.named_modules())
    folded = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not F.pad:
            continue
        reason = _fold_reason(node, modules)
        if reason is not None:
            raise ConversionError(
                f"cannot convert node {node.name!r} (torch.nn.functional.pad): {reason}; give "
                "the conv after it that padding instead (nn.Conv2d(padding=...)), or keep this "
                "network float"
            )
        pad, _, _ = _pad_args(node)
        left, top = pad[0], pad[2] if len(pad) == 4 else 0
        for user in list(node.users):
            conv = modules[user.target]
            ph, pw = int_padding(conv)
            conv.padding = (ph + top, pw + left)
            user.replace_input_with(node, node.args[0])
        gm.graph.erase_node(node)
        folded.append(node.name)
    gm.recompile()
    return folded
