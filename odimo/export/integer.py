# SPDX-License-Identifier: Apache-2.0
"""Integer export of a mapped network: `weights.npz` (arrays) + `quant.json` (everything else).

Arrays are stored in the layout of the split network (`split_model`): a unit's rows are its
output channels in the order its conv produces them, and the input columns follow the layer's
input channel space. Keys are `<layer>.<name>` and `<layer>.<unit>.<name>` (layer = module
path, unit = `digital` / `analog`):

- `<layer>.in_order` int64 [C_in]: original input channel at each input column.
- `<layer>.out_order` int64 [C_out]: original output channel at each output position.
- `<layer>.<unit>.channels` int64 [n]: original output channel of each row of the unit.
- `<layer>.<unit>.weight` int8 [n, C_in/groups, K_y, K_x]: digital: q in [-127, 127];
  analog: ternary codes t in {-1, 0, 1}. A unit with the `depthwise3x3` operator in an
  operator-choice layer (Darkside's DWE in a slot; its entry says `"operator": "depthwise3x3"`)
  stores [n, 1, K_y, K_x]: row i is the 3x3 filter of input channel `channels[i]`.
- `<layer>.<unit>.bias` int32 [n]: 16-bit bias codes b in [-32768, 32767].
- `<layer>.<unit>.bias_step` float32 [n]: the bias step (weight step × input activation step,
  as the mapped layer computed it in float32); real bias = b · bias_step.
- `<layer>.<unit>.scale` float32 [n] (analog only): per-channel ternary scale s_c.

Real (fake-quantized) values, which `quant.json` states per layer:
- digital: W = q · 2^e / 127 with the layer's power-of-two range s = 2^e (`range_exp` e). The
  step s/127 is NOT a power of two: a deployment requantises the accumulator Σ q·x_int + b by
  (2^e / 127) · 2^-k_in / 2^-k_out, i.e. an integer multiplier and a right shift (as the
  original flow does); that multiplier is the deployment's approximation, not part of this
  file. Compute q · 2^e first, then divide by 127, to reproduce the float32 values bit-exactly.
- analog: W = s_c · t; the accumulator Σ t·x_int + b is scaled by s_c · 2^-k_in per channel
  (a float; the analog core's own output scaling is outside this model).
- bias: b · bias_step, with bias_step = 2^e/127 · 2^-k_in (digital) or s_c · 2^-k_in (analog).
- activations: x = x_int · 2^-k, x_int = floor(clamp(x_real, 0, clip) · 2^k) in [0, max_level].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from odimo.errors import ConfigError
from odimo.export.channel_plan import ChannelPlan, plan_channels
from odimo.hw import platform_identity
from odimo.hw.platform import Platform
from odimo.nn.conv import MappedConv2d
from odimo.nn.mapping import quant_layers
from odimo.nn.operator_split import split_layout
from odimo.nn.split import unit_quantization, unit_segments
from odimo.quant import (
    Int8WeightPow2,
    QuantAdd,
    QuantAvgPool2d,
    TernaryWeightPerChannel,
    UintActPact,
)
from odimo.quant.activation import pow2_exponent

QUANT_FORMAT = "odimo.quant/1"


def activation_names(model: nn.Module) -> dict[int, str]:
    """Name of every activation quantizer (its first module path), keyed by object id."""
    names: dict[int, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, UintActPact):
            names.setdefault(id(module), name)
    return names


def activation_entry(act: UintActPact) -> dict[str, Any]:
    """Clip, power-of-two step exponent and top level of one activation quantizer."""
    scale = float(act.scale())
    clip = float(act.clip.detach())
    k = pow2_exponent(scale)
    return {
        "clip": clip,
        "bits": act.bits,
        "scale_exp": k,
        "step": 2.0**-k,
        "max_level": int(np.floor(np.float32(clip) * np.float32(scale))),
    }


def _unit_export(
    layer: MappedConv2d,
    unit: int,
    rows: torch.Tensor,
    columns: torch.Tensor,
    key: str,
    arrays: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Arrays of one unit of one layer (added to `arrays`) and its JSON entry."""
    q = unit_quantization(layer, unit)
    codes = split_layout(q.codes.cpu(), layer, unit, rows, columns)
    arrays[f"{key}.channels"] = rows.numpy().astype(np.int64)
    arrays[f"{key}.weight"] = codes.numpy().astype(np.int8)
    arrays[f"{key}.bias"] = q.bias_int.cpu()[rows].numpy().astype(np.int32)
    arrays[f"{key}.bias_step"] = q.bias_step.cpu()[rows].float().numpy()
    wq = layer.weight_quants[unit]
    entry: dict[str, Any] = {
        "count": len(rows),
        "weight": f"{key}.weight",
        "bias": f"{key}.bias",
        "bias_step": f"{key}.bias_step",
        "channels": f"{key}.channels",
    }
    if unit in getattr(layer, "depthwise_units", ()):  # row i: the filter of input channels[i]
        entry["operator"] = "depthwise3x3"
    if isinstance(wq, Int8WeightPow2):
        entry.update(
            weight_format="int8_pow2",
            levels=wq.levels,
            range_exp=pow2_exponent(float(wq.range())),
            real_weight="weight * 2**range_exp / levels",
        )
    elif isinstance(wq, TernaryWeightPerChannel):
        arrays[f"{key}.scale"] = q.out_scale.cpu()[rows].float().numpy()
        entry.update(
            weight_format="ternary_per_channel",
            scale=f"{key}.scale",
            real_weight="weight * scale[:, None, None, None]",
        )
    else:  # unit_quantization above already refuses it; say so here too, never skip silently
        raise ConfigError(f"no integer export for weight quantizer {type(wq).__name__}")
    entry["real_bias"] = "bias * bias_step"
    return entry


@torch.no_grad()
def _layer_entry(
    name: str, layer: nn.Module, plan: ChannelPlan, platform: Platform, acts: dict, arrays: dict
) -> dict:
    """One mapped layer's `quant.json` entry; its orders and unit arrays go into `arrays`."""
    in_order, out_order = plan.in_order(name), plan.out_order(name)
    assignment = layer.assignment.tolist()
    arrays[f"{name}.in_order"] = np.asarray(in_order, dtype=np.int64)
    arrays[f"{name}.out_order"] = np.asarray(out_order, dtype=np.int64)
    columns = torch.tensor(in_order, dtype=torch.long)
    units = {}
    for u, unit in enumerate(platform.unit_names):
        rows = torch.tensor([c for c in out_order if assignment[c] == u], dtype=torch.long)
        if len(rows):
            units[unit] = _unit_export(layer, u, rows, columns, f"{name}.{unit}", arrays)
    return {
        "name": name,
        "c_in": layer.in_channels,
        "c_out": layer.out_channels,
        "kernel_size": list(layer.kernel_size),
        "stride": list(layer.stride),
        "padding": list(layer.padding),
        "groups": layer.groups,
        "input_act": acts[id(layer.input_quant)],
        "in_order": f"{name}.in_order",
        "out_order": f"{name}.out_order",
        "segments": [list(seg) for seg in unit_segments(assignment, out_order)],
        "units": units,
    }


def integer_export(
    mapped_model: nn.Module, platform: Platform, plan: ChannelPlan | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """Integer weights, biases and scales of every mapped layer, in the split layout.

    Returns the arrays for `weights.npz` and the `quant.json` document (see module doc).
    """
    model = mapped_model
    plan = plan or plan_channels(model, platform.num_units)
    acts = activation_names(model)
    modules = dict(model.named_modules())
    arrays: dict[str, np.ndarray] = {}
    quant = quant_layers(model)
    order = [n for n in plan.input_space if n in quant]  # execution order
    layers = [_layer_entry(n, quant[n], plan, platform, acts, arrays) for n in order]
    doc = {
        "format": QUANT_FORMAT,
        "platform": platform.name,
        "platform_identity": platform_identity(platform),
        "units": list(platform.unit_names),
        "layout": "split",
        "activations": {
            acts[id(m)]: activation_entry(m)
            for m in modules.values()
            if isinstance(m, UintActPact) and id(m) in acts
        },
        "adds": [
            {"name": n, "act": acts[id(m.act)]}
            for n, m in modules.items()
            if isinstance(m, QuantAdd)
        ],
        "pools": [
            {"name": n, "act": acts[id(m.act)]}
            for n, m in modules.items()
            if isinstance(m, QuantAvgPool2d)
        ],
        "layers": layers,
    }
    spec = getattr(model, "spec", None)
    if spec is not None:
        doc["model"] = spec.to_json()
    return arrays, doc
