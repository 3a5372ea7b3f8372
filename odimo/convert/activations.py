# SPDX-License-Identifier: Apache-2.0
"""Activations other than ReLU: what 7-bit unsigned activations can hold, and the substitution.

DIANA's activations are 7-bit UNSIGNED: odimo quantizes them with PaCT, `clamp(x, 0, clip)`
rounded to 127 steps, and that clamp is the network's ReLU (or ReLU6, or Hardtanh(0, m)). An
activation converts exactly only if it IS such a clamp. For the others:

| activation | what the clamp cannot hold | `substitute_activations=relu` |
|---|---|---|
| LeakyReLU, PReLU, RReLU | the scaled negative part | ReLU |
| ELU, SELU, CELU | the negative exponential part | ReLU |
| SiLU, GELU, Mish | the smooth bend and the negative dip (down to -0.28 / -0.17 / -0.31) | ReLU |
| Hardswish | x·relu6(x+3)/6: a quadratic near 0, negative down to -0.375 | ReLU |
| Softplus | the smooth positive curve below 0 | ReLU |
| Hardsigmoid, Sigmoid | a squashing of x (usually a gate that multiplies activations) | refused |
| Tanh | a signed squashing into (-1, 1) | refused |

The substitution swaps the ReLU-like ones for ReLU before conversion. It CHANGES the network
(a pretrained float network loses accuracy until trained again), so the warm-up must train
the substituted network (or a loaded checkpoint must be fine-tuned). Squashing activations
have no ReLU stand-in: a network that needs them stays float (or the user rewrites it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from odimo.errors import ConfigError

#: What the clamp cannot hold, per activation (module and functional spellings alike).
LOST = {
    "LeakyReLU": "scaled negative part",
    "PReLU": "scaled negative part",
    "RReLU": "scaled negative part",
    "ELU": "negative exponential part",
    "SELU": "negative exponential part",
    "CELU": "negative exponential part",
    "SiLU": "smooth bend and negative dip",
    "GELU": "smooth bend and negative dip",
    "Mish": "smooth bend and negative dip",
    "Hardswish": "quadratic bend and negative dip (x·relu6(x+3)/6)",
    "Softplus": "smooth curve below 0",
    "Hardsigmoid": "shifted squashing (usually a gate that multiplies activations)",
    "Sigmoid": "squashing (usually a gate that multiplies activations)",
    "Tanh": "signed squashing into (-1, 1)",
}
#: Activations that `substitute_activations=relu` replaces by ReLU.
RELU_LIKE_MODULES = (
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.SiLU,
    nn.GELU,
    nn.Mish,
    nn.Hardswish,
    nn.Softplus,
)
RELU_LIKE_FUNCTIONS = {
    F.leaky_relu: "LeakyReLU",
    F.elu: "ELU",
    F.selu: "SELU",
    F.celu: "CELU",
    F.silu: "SiLU",
    F.gelu: "GELU",
    F.mish: "Mish",
    F.hardswish: "Hardswish",
    F.softplus: "Softplus",
}
SQUASHING = {
    nn.Hardsigmoid: "Hardsigmoid",
    nn.Sigmoid: "Sigmoid",
    nn.Tanh: "Tanh",
    F.hardsigmoid: "Hardsigmoid",
    torch.sigmoid: "Sigmoid",
    F.sigmoid: "Sigmoid",
    "sigmoid": "Sigmoid",
    torch.tanh: "Tanh",
    F.tanh: "Tanh",
    "tanh": "Tanh",
}
SUBSTITUTIONS = ("relu",)


def activation_name(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """The activation a node computes (a `LOST` key), or None for anything else."""
    if node.op == "call_module":
        module = modules[node.target]
        name = type(module).__name__
        if isinstance(module, RELU_LIKE_MODULES) or type(module) in SQUASHING:
            return name if name in LOST else None
        return None
    if node.op == "call_function" and node.target in RELU_LIKE_FUNCTIONS:
        return RELU_LIKE_FUNCTIONS[node.target]
    if node.op in ("call_function", "call_method") and node.target in SQUASHING:
        return SQUASHING[node.target]
    return None


def activation_hint(name: str) -> str:
    """Why an activation is refused and what to do (the reason part of a refusal line)."""
    what = f"7-bit unsigned activations (PaCT: clamp(x, 0, clip)) cannot hold {name}'s {LOST[name]}"
    if name in ("Hardsigmoid", "Sigmoid", "Tanh"):
        return (
            f"{what}, and it has no ReLU stand-in: remove it (e.g. drop the squeeze-excitation "
            "gate), or keep this network float"
        )
    return (
        f"{what}: set model.substitute_activations=relu to replace it by ReLU (this changes the "
        "network: train the warm-up or fine-tune a loaded one), or keep this network float"
    )


def substitute_activations(gm: fx.GraphModule, substitute: str | None) -> list[str]:
    """Replace every ReLU-like activation of the traced graph by ReLU (`substitute='relu'`).

    Modules are swapped in place (every call of a shared module changes), functional calls
    become `F.relu`. Returns the replaced nodes as `name (Activation)`; squashing activations
    are left for the classifier to refuse.
    """
    if substitute is None:
        return []
    if substitute not in SUBSTITUTIONS:
        raise ConfigError(
            f"model.substitute_activations={substitute!r}: choose null or relu (docs/convert.md)"
        )
    modules = dict(gm.named_modules())
    done = []
    for node in gm.graph.nodes:
        name = activation_name(node, modules)
        if name is None or name not in LOST or name in ("Hardsigmoid", "Sigmoid", "Tanh"):
            continue
        if node.op == "call_module":
            if not isinstance(modules[node.target], nn.ReLU):
                gm.set_submodule(node.target, nn.ReLU())
                modules[node.target] = gm.get_submodule(node.target)
        else:
            node.target, node.args, node.kwargs = F.relu, node.args[:1], {}
        done.append(f"{node.name} ({name})")
    gm.recompile()
    return done
