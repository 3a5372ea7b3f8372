# SPDX-License-Identifier: Apache-2.0
"""Convert a float `nn.Module` into odimo's float, search or mapped form."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import fx, nn

from odimo.convert.activations import substitute_activations
from odimo.convert.emit import write_float, write_quantized
from odimo.convert.graph import classify
from odimo.convert.plan import QuantPlan, plan_quantizers
from odimo.convert.rewrite import fold_pads, refuse_shared_layers
from odimo.convert.trace import ConversionError, propagate_shapes, shape, trace
from odimo.nn.factory import FloatOps, QuantOps


@dataclass(frozen=True)
class Conversion:
    """What the converter made of a network (kept as `model.conversion`).

    Attributes:
        source: class name of the converted module.
        layers: conv and linear layers, in execution order.
        fixed: those whose mapping the user fixed (`fixed` patterns).
        quantizers: activation quantizers of the quantized forms.
        rectified: tensors a quantized form clamps at 0 although the float network lets them be
            negative (e.g. linear bottlenecks): the search and fine-tune absorb the change.
        substituted: activations replaced by ReLU (`substitute_activations`), `node (Activation)`.
        folded_pads: `F.pad` nodes folded into the padding of the convs that read them.
    """

    source: str
    layers: tuple[str, ...]
    fixed: tuple[str, ...]
    quantizers: int
    rectified: tuple[str, ...]
    substituted: tuple[str, ...] = ()
    folded_pads: tuple[str, ...] = ()


def analyse(
    module: nn.Module, input_size: tuple[int, int, int], substitute: str | None = None
) -> tuple[fx.GraphModule, dict[str, str], QuantPlan]:
    """Trace, rewrite (activation substitution, shared layers, pads), propagate shapes,
    classify every node and place the quantizers. The rewrites are in `gm.meta['rewrites']`."""
    gm = trace(module)
    substituted = substitute_activations(gm, substitute)
    refuse_shared_layers(gm)
    folded = fold_pads(gm)
    gm.meta["rewrites"] = (tuple(substituted), tuple(folded))
    propagate_shapes(gm, tuple(input_size))
    kinds = classify(gm)
    out = [n for n in gm.graph.nodes if n.op == "output"][0].args[0]
    if not isinstance(out, fx.Node) or "tensor_meta" not in out.meta or len(shape(out)) != 2:
        raise ConversionError(
            f"{type(module).__name__} must return one tensor of logits [N, classes] "
            "(e.g. not a tuple with auxiliary outputs)"
        )
    return gm, kinds, plan_quantizers(gm, kinds)


def convert(
    module: nn.Module,
    ops: FloatOps | QuantOps,
    input_size: tuple[int, int, int],
    fixed: tuple[str, ...] = (),
    substitute: str | None = None,
) -> fx.GraphModule:
    """The network in the form of `ops` (`odimo.nn.factory.make_ops`).

    The float form copies the source's weights (and computes exactly what the source computes);
    the quantized forms start from fresh weights, to be filled by `fold_float_into`.

    Args:
        module: a float network taking [N, C, H, W] images and returning [N, classes] logits.
        ops: the layer factory of the form to build.
        input_size: [C, H, W] of one input.
        fixed: fnmatch patterns of layer names whose mapping is not searched (first unit).
        substitute: `relu` replaces ReLU-like activations (SiLU, Hardswish, LeakyReLU, ...) by
            ReLU before converting (`odimo.convert.activations`); None refuses them.
    """
    source = copy.deepcopy(module).eval()
    gm, kinds, plan = analyse(source, input_size, substitute)
    name = f"Converted{type(module).__name__}"
    fixed = tuple(fixed)
    if ops.form == "float":
        model = write_float(gm, kinds, fixed, name)
    else:
        model = write_quantized(gm, kinds, plan, ops, fixed, name)
    model.train(module.training)
    model.conversion = _summary(module, gm, kinds, plan, fixed)
    return model


def _summary(module, gm, kinds, plan: QuantPlan, fixed) -> Conversion:
    from odimo.convert.emit import is_fixed

    layers = tuple(n.target for n in gm.graph.nodes if kinds[n.name] in ("conv", "linear"))
    roots = {plan.root(c) for c in plan.classes.parent}
    return Conversion(
        source=type(module).__name__,
        layers=layers,
        fixed=tuple(n for n in layers if is_fixed(n, fixed)),
        quantizers=len(roots),
        rectified=tuple(plan.rectified),
        substituted=gm.meta["rewrites"][0],
        folded_pads=gm.meta["rewrites"][1],
    )


@torch.no_grad()
def same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    """Whether two networks give identical outputs on `x` in eval mode (bit for bit)."""
    return torch.equal(a.eval()(x), b.eval()(x))
