# SPDX-License-Identifier: Apache-2.0
"""The integerised ONNX form of a mapped network: what DIANA's compilers pattern-match.

`integer_model(mapped, platform)` is the split network (one conv per unit, `split_model`) with
every unit conv computing on integer codes, in float ops (the form MATCH and HTVM take):

- digital: codes = x·2^k → Conv (int8-valued weights, int16-valued bias) → Mul 2^(e−k) →
  Div 127 → the next activation's Clip → Mul 2^k' → Floor (→ Div 2^k');
- analog: codes = x·2^k → Conv (weights in {−1, 0, 1}, per row tile) → Div g → Floor →
  Clip(−32, 31) → (ReduceSum over tiles) → Mul g → Add (bias codes + the read-out's half-LSB
  offset, tiles·⌊g/2⌋) → Mul 2^−k → Mul s_c.

Every value is the one the mapped network computes (the same single rounding per layer), so
onnxruntime's output equals the mapped network and the int64 reference
(`odimo.export.integer_reference`) to the bit. The read-out is exported noiseless: the chip
adds its noise itself. Bit widths are annotated per Conv node (`doc_string`, JSON) and in the
model's metadata (`odimo.bits`).

What the compilers' patterns cannot take is refused up front (`check_patterns`): analog convs
with groups > 1, kernels other than 1/3/5/7, strides other than 1/2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odimo.errors import ConfigError
from odimo.export.channel_plan import split_model
from odimo.export.onnx import _require, export_onnx
from odimo.hw.platform import Platform
from odimo.nn.mapping import quant_layers
from odimo.nn.operator_split import split_layout
from odimo.nn.split import SplitConv2d, unit_quantization
from odimo.quant.adc import AnalogReadout, rounding_offset

#: Kernel sizes and strides the compilers' conv patterns take.
KERNELS, STRIDES = (1, 3, 5, 7), (1, 2)


def check_patterns(mapped_model: nn.Module) -> None:
    """ConfigError (one line, naming layer and constraint) for a layer no pattern takes."""
    for name, layer in quant_layers(mapped_model).items():
        analog = layer.readout_unit is not None and bool(
            (layer.hard_assignment() == layer.readout_unit).any()
        )
        bad_kernel = [k for k in layer.kernel_size if k not in KERNELS]
        bad_stride = [s for s in layer.stride if s not in STRIDES]
        if bad_kernel:
            raise ConfigError(
                f"layer {name!r}: kernel {tuple(layer.kernel_size)} is not 1/3/5/7, which the "
                "DIANA compilers' conv patterns require"
            )
        if bad_stride:
            raise ConfigError(
                f"layer {name!r}: stride {tuple(layer.stride)} is not 1 or 2, which the DIANA "
                "compilers' conv patterns require"
            )
        if analog and layer.groups != 1:
            raise ConfigError(
                f"layer {name!r}: groups={layer.groups} on the analog unit; its pattern needs "
                "groups = 1 (map the layer digital)"
            )


class IntegerUnitConv2d(nn.Module):
    """One unit conv of a split layer on integer codes (see the module doc)."""

    def __init__(self, layer: nn.Module, unit: int, conv: nn.Conv2d, rows: list[int], cols):
        super().__init__()
        q = unit_quantization(layer, unit)
        index = torch.tensor(rows, dtype=torch.long)
        codes = split_layout(q.codes.cpu(), layer, unit, index, cols).float()
        # parameters (frozen), not buffers: the exporter and `export_onnx` look for parameters
        self.weight = nn.Parameter(codes, requires_grad=False)
        self.bias = nn.Parameter(q.bias_int.cpu()[index].float(), requires_grad=False)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.groups = conv.groups
        self.in_scale = 1.0 / q.act_step  # input codes = x · 2^k
        self.post_mul = q.act_step * q.weight_mult
        self.out_div = q.out_div
        scale = None if q.out_scale is None else q.out_scale.cpu()[index].view(1, -1, 1, 1)
        self.register_buffer("out_scale", scale)
        self.readout: AnalogReadout | None = getattr(conv, "readout", None)
        self.bits = self._bits(layer, unit)

    def _bits(self, layer: nn.Module, unit: int) -> dict[str, Any]:
        fmt = layer.platform.units[unit].weight_format
        info: dict[str, Any] = {
            "unit": layer.platform.unit_names[unit],
            "in_bits": layer.input_quant.bits,
            "weight_bits": 1.5 if fmt.startswith("ternary") else 8,
            "bias_bits": layer.bias_quant.bits,
        }
        if self.readout is not None:
            r = self.readout
            info.update(
                out_bits=r.adc.bits, adc_rows=r.adc.rows, tiles=r.tiles,
                gain_log2=int(r.log2_gain), adc_clip=[r.adc.qmin, r.adc.qmax],
                adc_offset=r.tiles * rounding_offset(int(r.log2_gain)),
            )  # fmt: skip
        return info

    def forward(self, x: Tensor) -> Tensor:
        codes = x * self.in_scale
        if self.readout is None:
            acc = F.conv2d(
                codes, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
            )
        else:
            r = self.readout
            g = float(2.0 ** int(r.log2_gain))
            p = r.partial_sums(codes, self.weight, self)
            q = torch.clamp(torch.floor(p / g), float(r.adc.qmin), float(r.adc.qmax))
            offset = r.tiles * rounding_offset(int(r.log2_gain))  # folded into the bias add
            acc = q.sum(1) * g + (self.bias.view(1, -1, 1, 1) + offset)
        return output_scaling(acc * self.post_mul, self.out_scale, self.out_div)


def output_scaling(y: Tensor, out_scale: Tensor | None, out_div) -> Tensor:
    """The unit conv's last factors, in both integer exports: × s_c (if any), ÷ out_div (127)."""
    if out_scale is not None:
        y = y * out_scale
    if out_div is not None:
        y = y / out_div
    return y


@torch.no_grad()
def integer_model(
    mapped_model: nn.Module, platform: Platform, unit_conv: type[nn.Module] = IntegerUnitConv2d
) -> nn.Module:
    """The split network with every unit conv replaced by `unit_conv(layer, unit, conv, rows,
    in_order)` (default: the integer-code convs of the module doc); CPU, eval mode. The layers
    no compiler pattern takes are refused first (`check_patterns`)."""
    check_patterns(mapped_model)
    mapped = mapped_model.cpu().eval()
    model = split_model(mapped, platform)
    layers = quant_layers(mapped)
    for name, split in model.named_modules():
        if not isinstance(split, SplitConv2d):
            continue
        for u, conv in split.unit_convs():
            unit = unit_conv(layers[name], u, conv, list(split.unit_channels[u]), split.in_order)
            setattr(split, split.unit_names[u], unit)
    return model


def annotate_bits(path: Path, model: nn.Module) -> int:
    """Write each integer conv's bit widths on its ONNX Conv node(s) (doc_string, JSON) and
    all of them in the model metadata `odimo.bits`; returns how many nodes were annotated."""
    onnx = _require("onnx")
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    units = [(n, m) for n, m in model.named_modules() if isinstance(m, IntegerUnitConv2d)]
    table, count = {}, 0
    for node in proto.graph.node:
        if node.op_type != "Conv" or node.input[1] not in inits:
            continue
        w = inits[node.input[1]]
        for name, unit in units:
            ref = unit.weight.numpy()
            # matched on the weight's values (a tiled analog conv's regrouped weight is not)
            if w.shape == ref.shape and (w == ref).all():
                node.doc_string = json.dumps({"layer": name, **unit.bits})
                table[node.name] = {"layer": name, **unit.bits}
                count += 1
                break
    entry = proto.metadata_props.add()
    entry.key, entry.value = "odimo.bits", json.dumps(table)
    onnx.save(proto, str(path))
    return count


def export_integer_onnx(
    mapped_model: nn.Module, platform: Platform, path: str | Path, opset: int = 18
) -> dict[str, Any]:
    """Write the integerised ONNX form of a mapped network; returns op types and annotations."""
    path = Path(path)
    model = integer_model(mapped_model, platform)
    ops = export_onnx(model, path, tuple(mapped_model.spec.input_size), opset=opset)
    return {"ops": ops, "annotated_convs": annotate_bits(path, model), "model": model}
