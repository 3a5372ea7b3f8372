# SPDX-License-Identifier: Apache-2.0
"""The QDQ ONNX form of a mapped network: int8 weights, Quantize/DequantizeLinear, opset 13.

A second, independent numeric check of the deployed network (docs/chip.md): the same split
network as the other exports (one conv per unit, channel permutations absorbed), written in the
operator set of the ONNX quantization format instead of integer-valued float tensors:

- activations: the PaCT floor `Clip(0, a) → Mul 2^k → Floor → Div 2^k`, then
  `QuantizeLinear(2^-k, uint8) → DequantizeLinear(2^-k)` (the 7-bit code as a uint8; the floor
  is explicit because QuantizeLinear rounds half to even);
- digital unit: `Conv(x, DequantizeLinear(q int8, 2^e per channel, axis 0),
  DequantizeLinear(b int32, 2^(e−k))) → Div 127`;
- analog unit: `Conv(x, DequantizeLinear(t int8 ∈ {−1, 0, 1}, 1 per channel, axis 0))` (one
  grouped conv over the row tiles: p·2^−k per tile) `→ Div g·2^−k → Floor → Mul g·2^−k →
  QuantizeLinear(g·2^−k, int8) → Clip(−32, 31) → DequantizeLinear(g·2^−k) → ReduceSum (tiles)
  → Add DequantizeLinear(b int32, 2^−k) → Mul s_c`, the bias codes carrying the read-out's
  half-LSB offset tiles·⌊g/2⌋ (`odimo.quant.adc.rounding_offset`). The floor is explicit: for
  an integer p, floor(p/g) = round_half_even((p − (g − 1)/2)/g) would let QuantizeLinear round
  it, but the classifier after a global average pool reads inputs on a finer grid than the
  activations' (p not an integer), where only the explicit floor is the chip's; the 6-bit range
  is the Clip on the int8 codes;
- without a read-out (`platform.analog.adc=null`): `Conv → Add bias → Mul s_c` likewise.

Why the weight scales are powers of two (the range 2^e of the 8-bit weights, 1 for the ternary
ones) and the remaining factors (1/127, the ternary scale s_c) follow the integer part: with
them every conv accumulates integers times a power of two, exactly in float32, so onnxruntime
reproduces the int64 reference (`odimo.export.integer_reference`) to the bit. A weight scale
2^e/127 or s_c makes every product round, which moves about one pre-activation in a thousand
across a floor step (docs/export.md). This is also how DIANA computes: the analog array holds
the ternary codes and s_c scales its read-out digitally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odimo.export.channel_plan import replace_shared
from odimo.export.integer_onnx import integer_model, output_scaling
from odimo.export.onnx import export_onnx
from odimo.hw.platform import Platform
from odimo.nn.operator_split import split_layout
from odimo.nn.split import ExportActQuant, unit_quantization
from odimo.quant.adc import rounding_offset

#: Opset of the QDQ form: per-axis QuantizeLinear/DequantizeLinear exist from 13 on.
QDQ_OPSET = 13


class _Dequantize(torch.autograd.Function):
    """DequantizeLinear with zero point 0: codes · scale (per tensor, or per `axis`)."""

    @staticmethod
    def forward(ctx, codes: Tensor, scale: Tensor, axis: int) -> Tensor:
        if scale.dim() == 0:
            return codes.float() * scale
        shape = [1] * codes.dim()
        shape[axis] = -1
        return codes.float() * scale.view(shape)

    @staticmethod
    def symbolic(g, codes, scale, axis):
        return g.op("DequantizeLinear", codes, scale, axis_i=axis)


class _Quantize(torch.autograd.Function):
    """QuantizeLinear with zero point 0 (round half to even, saturate to the type), then a
    Clip to [lo, hi] when that range is narrower than the type's."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, signed: bool, lo: int, hi: int) -> Tensor:
        dtype = torch.int8 if signed else torch.uint8
        info = torch.iinfo(dtype)
        q = torch.round(x / scale).clamp_(info.min, info.max).clamp_(lo, hi)
        return q.to(dtype)

    @staticmethod
    def symbolic(g, x, scale, signed, lo, hi):
        dtype = torch.int8 if signed else torch.uint8
        zero = g.op("Constant", value_t=torch.tensor(0, dtype=dtype))
        q = g.op("QuantizeLinear", x, scale, zero)
        info = torch.iinfo(dtype)
        if (lo, hi) == (info.min, info.max):
            return q
        low = g.op("Constant", value_t=torch.tensor(lo, dtype=dtype))
        high = g.op("Constant", value_t=torch.tensor(hi, dtype=dtype))
        return g.op("Clip", q, low, high)


def dequantize(codes: Tensor, scale: Tensor, axis: int = 0) -> Tensor:
    """codes · scale as an ONNX DequantizeLinear (zero point 0)."""
    return _Dequantize.apply(codes, scale, axis)


def quantize(x: Tensor, scale: Tensor, signed: bool, lo: int, hi: int) -> Tensor:
    """round_half_even(x / scale) into int8/uint8, clipped to [lo, hi], as ONNX ops."""
    return _Quantize.apply(x, scale, signed, lo, hi)


class QdqActQuant(nn.Module):
    """The 7-bit activation quantizer as floor, then a uint8 Quantize/Dequantize pair."""

    def __init__(self, act: ExportActQuant):
        super().__init__()
        self.clip, self.scale = act.clip, act.scale  # codes in [0, floor(clip·scale)]
        self.register_buffer("step", torch.tensor(1.0 / act.scale))

    def forward(self, x: Tensor) -> Tensor:
        on_grid = torch.floor(torch.clamp(x, 0.0, self.clip) * self.scale) / self.scale
        return dequantize(quantize(on_grid, self.step, False, 0, 255), self.step)


class QdqUnitConv2d(nn.Module):
    """One unit conv of a split layer in QDQ form (see the module doc)."""

    def __init__(self, layer: nn.Module, unit: int, conv: nn.Conv2d, rows: list[int], cols):
        super().__init__()
        q = unit_quantization(layer, unit)
        index = torch.tensor(rows, dtype=torch.long)
        codes = split_layout(q.codes.cpu(), layer, unit, index, cols)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.groups, self.pad = conv.groups, 0
        self.readout = getattr(conv, "readout", None)
        self.out_div = q.out_div
        scale = None if q.out_scale is None else q.out_scale.cpu()[index].view(1, -1, 1, 1)
        self.register_buffer("out_scale", scale)
        self.register_buffer("bias", q.bias_int.cpu()[index].to(torch.int32))
        self.register_buffer("bias_scale", torch.tensor(q.act_step * q.weight_mult))
        if self.readout is not None:
            r = self.readout
            codes, self.groups, self.pad = r.tiled(codes.float())
            gain = 2.0 ** int(r.log2_gain)
            self.register_buffer("read_scale", torch.tensor(gain * q.act_step))
            # the read-out's half-LSB offset rides on the digital bias add (bias codes, p units)
            self.bias += r.tiles * rounding_offset(int(r.log2_gain))
        self.register_buffer("weight", codes.round().to(torch.int8))
        self.register_buffer("weight_scale", torch.full((len(codes),), q.weight_mult))

    def forward(self, x: Tensor) -> Tensor:
        weight = dequantize(self.weight, self.weight_scale, 0)
        bias = dequantize(self.bias, self.bias_scale)
        if self.readout is None:
            y = F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        else:
            r = self.readout
            if self.pad:
                x = F.pad(x, (0, 0, 0, 0, 0, self.pad))
            p = F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, self.groups)
            floor = torch.floor(p / self.read_scale) * self.read_scale  # floor(p/g), exact
            read = quantize(floor, self.read_scale, True, r.adc.qmin, r.adc.qmax)
            y = dequantize(read, self.read_scale)
            if r.tiles > 1:
                y = y.unflatten(1, (r.tiles, len(self.bias))).sum(1)
            y = y + bias.view(1, -1, 1, 1)
        return output_scaling(y, self.out_scale, self.out_div)


@torch.no_grad()
def qdq_model(mapped_model: nn.Module, platform: Platform) -> nn.Module:
    """The split network in QDQ form (module doc); CPU, eval mode, noiseless read-out."""
    model = integer_model(mapped_model, platform, QdqUnitConv2d)
    replace_shared(model, ExportActQuant, QdqActQuant)
    return model


def export_qdq_onnx(
    mapped_model: nn.Module, platform: Platform, path: str | Path, opset: int = QDQ_OPSET
) -> dict[str, Any]:
    """Write the QDQ ONNX form of a mapped network; returns its op types and the module."""
    model = qdq_model(mapped_model, platform)
    ops = export_onnx(model, Path(path), tuple(mapped_model.spec.input_size), opset=opset)
    return {"ops": ops, "model": model}
