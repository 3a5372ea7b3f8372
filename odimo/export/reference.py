# SPDX-License-Identifier: Apache-2.0
"""The mapped network evaluated in (practically) exact arithmetic: the yardstick of the export.

A float evaluation of the mapped network is not a fixed function: its 8-bit weights s·q/127
put about one pre-activation in a thousand exactly on a step of the next floor() quantizer, and
the rounding error of the sum decides the level (the mapped float32 model gives different
outputs for the same image in a batch of 64 and alone). `exact_reference` removes that: it
evaluates the network in float64 with the exact values of the mapped layers' integer codes and
biases (as the float32 model quantized them) and snaps pre-activations that lie within 1e-9 of a
step onto it, which is how exact (integer) arithmetic resolves them.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odimo.nn.conv import MappedConv2d
from odimo.nn.mapping import quant_layers
from odimo.nn.split import unit_quantization
from odimo.quant import UintActPact

#: Pre-activations closer than this to a quantisation step (in steps) are on it.
TIE_TOLERANCE = 1e-9


def snap_ties(module: UintActPact, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Forward pre-hook of a PaCT quantizer: move near-ties exactly onto the step."""
    x = args[0]
    scale = module.scale().to(x.dtype)
    levels = x * scale
    nearest = torch.round(levels)
    return (torch.where((levels - nearest).abs() < TIE_TOLERANCE, nearest / scale, x),)


class ExactMappedConv(nn.Module):
    """A mapped conv in float64 with the exact values of its quantized weight and bias."""

    def __init__(self, layer: MappedConv2d):
        super().__init__()
        weight = torch.zeros(layer.weight.shape, dtype=torch.float64)
        bias = torch.zeros(layer.out_channels, dtype=torch.float64)
        assignment = layer.assignment.cpu()
        for u in set(assignment.tolist()):
            q = unit_quantization(layer, u)
            w = q.codes.cpu().double() * q.weight_mult
            b = q.bias_int.cpu().double() * (q.act_step * q.weight_mult)
            if q.out_scale is not None:
                w = w * q.out_scale.cpu().double().view(-1, 1, 1, 1)
                b = b * q.out_scale.cpu().double()
            if q.out_div is not None:
                w, b = w / q.out_div, b / q.out_div
            on_u = assignment == u
            weight[on_u], bias[on_u] = w[on_u], b[on_u]
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.stride, self.padding = layer.stride, layer.padding
        self.dilation, self.groups = layer.dilation, layer.groups

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x.double(),
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )


def with_quant_layers_replaced(mapped_model: nn.Module, wrap) -> nn.Module:
    """A CPU eval-mode copy of a mapped model whose quantized convs are replaced by `wrap(layer)`
    (the exact float64 and the int64 references are both built this way)."""
    ref = copy.deepcopy(mapped_model).cpu().eval()
    for name, layer in quant_layers(ref).items():
        parent, _, child = name.rpartition(".")
        setattr(ref.get_submodule(parent) if parent else ref, child, wrap(layer))
    return ref


@torch.no_grad()
def exact_reference(mapped_model: nn.Module) -> nn.Module:
    """A float64 CPU copy of a mapped model that computes its exact-arithmetic outputs."""
    ref = with_quant_layers_replaced(mapped_model, ExactMappedConv).double()
    for m in ref.modules():
        if isinstance(m, UintActPact):
            m.register_forward_pre_hook(snap_ties)
    return ref
