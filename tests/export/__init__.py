# SPDX-License-Identifier: Apache-2.0
"""Shared builders for the export tests: random mapped networks and an exact reference.

Why an exact reference: the mapped network's float arithmetic puts some pre-activations
EXACTLY on a step of the next floor() quantizer (8-bit weights s·q/127), and the summation
order decides on which side they land, so two float evaluations of the same network (even the
mapped model at two batch sizes) differ there. The reference runs the mapped model in float64
and snaps pre-activations within 1e-9 of a step onto it: the exact-arithmetic result, which the
split network (exact integer-valued accumulation) must reproduce.
"""

from __future__ import annotations

import copy
from functools import cache

import torch
from torch import Tensor, nn

from odimo.export.reference import snap_ties
from odimo.hw import Diana, get_platform, with_analog
from odimo.hw.analog import AdcConfig, AnalogArithmetic
from odimo.models import ModelSpec, build_model
from odimo.nn import Mapping, apply_mapping, quant_layers
from odimo.quant import Int8WeightPow2, TernaryWeightPerChannel, UintActPact
from odimo.quant.adc import calibrate_readouts

#: Small inputs keep the tests fast; every final feature map is 1x1 or a power-of-two area.
SPECS = {
    "res20": ModelSpec("res20", (3, 16, 16), 5),
    "res18": ModelSpec("res18", (3, 8, 8), 4),
    "mbv1": ModelSpec("mbv1", (1, 16, 16), 3),
}
MAPPINGS = ("digital", "random", "analog")


@torch.no_grad()
def _randomise(model: nn.Module, seed: int) -> None:
    """Random weights, biases and clips; quantizers initialised from the weights.

    Weights are put on the 8-bit grid and biases on their unit's bias grid afterwards, so that
    float32 and float64 copies quantize to the same integers (needed to compare them).
    """
    g = torch.Generator().manual_seed(seed)
    for layer in quant_layers(model).values():
        fan_in = layer.weight[0].numel()
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * 0.1)
        if layer.weight.numel() <= 200_000:
            layer.init_quantizers()
        else:  # the least-squares ternary init is a 96-step grid search: too slow for res18
            for q in layer.weight_quants:
                if isinstance(q, TernaryWeightPerChannel):
                    q.log_scale.copy_(torch.log(0.7 * layer.weight.abs().flatten(1).mean(1)))
                else:
                    q.init_from(layer.weight)
        digital = layer.weight_quants[0]
        assert isinstance(digital, Int8WeightPow2)
        layer.weight.copy_(digital(layer.weight))
    for m in model.modules():
        if isinstance(m, UintActPact):
            m.clip.fill_(float(torch.empty(()).uniform_(0.8, 8.0, generator=g)))


@torch.no_grad()
def _snap_biases(model: nn.Module) -> None:
    """Put each bias on the grid of the unit its channel is mapped to."""
    for layer in quant_layers(model).values():
        for u in range(layer.platform.num_units):
            on_u = layer.assignment == u
            if on_u.any():
                _, bias = layer.unit_weight_bias(u)
                layer.bias.copy_(torch.where(on_u, bias, layer.bias))


def random_mapping(model: nn.Module, kind: str, seed: int) -> Mapping:
    """All digital, all analog (depthwise convs stay digital) or a random per-channel mapping."""
    g = torch.Generator().manual_seed(seed + 1)
    platform = Diana()
    layers = {}
    for name, layer in quant_layers(model).items():
        n = layer.out_channels
        if layer.groups > 1 or kind == "digital":
            layers[name] = (0,) * n
        elif kind == "analog":
            layers[name] = (1,) * n
        else:
            layers[name] = tuple(torch.randint(0, 2, (n,), generator=g).tolist())
    return Mapping(platform.name, platform.unit_names, layers)


@cache
def _base_model(name: str, seed: int) -> nn.Module:
    model = build_model(SPECS[name], "mapped", Diana())
    _randomise(model, seed)
    return model.eval()


def random_mapped(name: str, kind: str, seed: int = 0) -> tuple[nn.Module, Diana]:
    """A mapped model with non-trivial random weights, clips and the given mapping."""
    model = copy.deepcopy(_base_model(name, seed))
    apply_mapping(model, random_mapping(model, kind, seed))
    _snap_biases(model)
    return model.eval(), Diana()


def exact_reference(model: nn.Module) -> nn.Module:
    """A float64 copy of a mapped model whose quantizers resolve ties as exact arithmetic.

    Independent of `odimo.export.reference.exact_reference` (which builds its weights from the
    integer codes): here the mapped layers themselves run in float64.
    """
    ref = copy.deepcopy(model).double().eval()
    for m in ref.modules():
        if isinstance(m, UintActPact):
            m.register_forward_pre_hook(snap_ties)
    return ref


def inputs(name: str, n: int = 4, seed: int = 0) -> Tensor:
    """Random images in [0, 1] of the model's input size."""
    g = torch.Generator().manual_seed(100 + seed)
    return torch.rand(n, *SPECS[name].input_size, generator=g)


def onnx_reference_mapped(path, model: nn.Module, name: str, n: int = 16) -> tuple:
    """onnxruntime on the ONNX file `path`, the int64 reference and the mapped network: the
    three outputs (numpy) on the same `n` images, for the exactness checks of both integer forms."""
    from odimo.export.integer_reference import integer_reference
    from odimo.export.onnx import onnx_session, run_onnx

    x = inputs(name, n)
    got = run_onnx(onnx_session(path), x.numpy())
    with torch.no_grad():
        return got, integer_reference(model)(x).numpy(), model(x).numpy()


def chip_mapped(name: str, kind: str, rows: int = 1152, seed: int = 0) -> nn.Module:
    """`random_mapped` rebuilt on DIANA with its ADC (`rows` per read-out), gains calibrated."""
    ideal, _ = random_mapped(name, kind, seed)
    platform = with_analog(get_platform("diana"), AnalogArithmetic(AdcConfig(6, rows)))
    model = build_model(SPECS[name], "mapped", platform)
    for layer_name, layer in quant_layers(model).items():
        layer.set_assignment(quant_layers(ideal)[layer_name].assignment)
    model.load_state_dict(ideal.state_dict(), strict=False)
    model.eval()
    calibrate_readouts(model, inputs(name, 8, seed=1))
    return model
