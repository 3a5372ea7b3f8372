# SPDX-License-Identifier: Apache-2.0
"""The deployable form of a mapped conv: one real convolution per compute unit.

`SplitConv2d` replaces a `MappedConv2d` in the exported network. Each unit that holds channels
gets its own conv (a `UnitConv2d` child named after the unit: `digital`, `analog` on DIANA)
with only that unit's output channels and the unit's quantized weight and bias baked in. A
unit without channels has no conv at all (the child is `None`), never a zero-width conv.

How the quantized values are baked in. Mathematically a unit computes conv(x, Wq) + bq with
the fake-quantized weight Wq of the mapped layer. Baking Wq itself as a float tensor makes the
result depend on the order of the floating-point sum: the 8-bit weights s·q/127 put roughly one
pre-activation in a thousand EXACTLY on a step of the next floor() quantizer, and which side
the rounding error lands on changes with the summation order (measured: the mapped float model
itself differs by ~0.05 between a batch of 64 and 64 batches of 1). So each unit conv holds the
integer codes times a power of two (digital: q·s; analog: the ternary codes t), a bias that is
an integer times powers of two, and reads inputs on a power-of-two grid: its accumulation is
exact (integers below 2^24) whatever the order or runtime. The unit's remaining factor is applied
once after it (digital: / 127; analog: · s_c per channel). The result is the exact value of
conv(x, Wq) + bq rounded once: ties resolve as exact arithmetic (the hardware) resolves them,
and torch and onnxruntime agree to the bit. Runtimes must not fold these factors back into the
weights (onnxruntime does at its default optimisation level: disable graph optimisations).

Why a subclass of `nn.Conv2d` that has no weight of its own: the layer keeps the name, the
`repr` and the geometry attributes (`in_channels`, `out_channels`, `kernel_size`, `stride`,
`groups`) of the conv it replaces, so `record_geometry` sees ONE layer with the mapped layer's
geometry; the inner convs carry `cost_exempt = True` and are skipped. The state dict holds only
the real weights: `<layer>.digital.weight`, `<layer>.analog.bias`, ...

Output order. The output is the concatenation of the units' outputs. A unit conv may emit its
channels in any order (its weight rows are simply stored in that order), so any output order
in which each unit's channels form ONE contiguous block costs nothing: `digital` first, then
`analog`. When the network needs another order (a residual add whose addends come from convs
mapped differently, or the classifier, whose classes must stay in their original order), the
order is given explicitly as `out_order` and realised by static slices of the unit outputs,
concatenated in that order (`segments`): contiguous copies fixed at export time, never an
index/gather operation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from odimo.errors import ConfigError
from odimo.nn.conv import MappedConv2d, QuantConv2d
from odimo.quant import Int8WeightPow2, TernaryWeightPerChannel
from odimo.quant.activation import pow2_exponent
from odimo.quant.adc import AnalogReadout


def unit_segments(
    assignment: Sequence[int], out_order: Sequence[int]
) -> list[tuple[int, int, int]]:
    """Runs of equal unit along `out_order`, as (unit, start, stop) slices of that unit's output.

    A unit conv emits its channels in the order they appear in `out_order`, so consecutive
    positions on one unit are consecutive rows of that unit's output.
    """
    segments: list[tuple[int, int, int]] = []
    offset: dict[int, int] = {}
    for c in out_order:
        u = int(assignment[c])
        start = offset.get(u, 0)
        offset[u] = start + 1
        if segments and segments[-1][0] == u and segments[-1][2] == start:
            segments[-1] = (u, segments[-1][1], start + 1)
        else:
            segments.append((u, start, start + 1))
    return segments


@dataclass(frozen=True)
class UnitQuant:
    """One unit's quantized weight and bias of a conv, in integers plus exact scale factors.

    Real (fake-quantized) weight = codes · weight_mult · out_scale / out_div, real bias =
    bias_int · act_step · weight_mult · out_scale / out_div (= bias_int · bias_step).
    `weight_mult` and `act_step` are powers of two; `out_scale` (per channel) and `out_div`
    are the unit's remaining factors (None = 1).
    """

    codes: Tensor  # [C_out, C_in/g, K_y, K_x] int8
    bias_int: Tensor  # [C_out] int32 (16-bit values)
    bias_step: Tensor  # [C_out] float, the step the mapped layer quantises its bias with
    act_step: float  # step of the layer's input activation (a power of two)
    weight_mult: float  # power of two multiplying the codes inside the conv
    out_scale: Tensor | None  # [C_out] per-channel factor after the conv
    out_div: float | None  # divisor after the conv

    def conv_weight(self, dtype: torch.dtype) -> Tensor:
        """codes · weight_mult: integer-valued, exact."""
        return self.codes.to(dtype) * self.weight_mult

    def conv_bias(self, dtype: torch.dtype) -> Tensor:
        """bias_int · act_step · weight_mult: exact (powers of two)."""
        return self.bias_int.to(dtype) * (self.act_step * self.weight_mult)


@torch.no_grad()
def unit_quantization(layer: QuantConv2d, unit: int) -> UnitQuant:
    """Integer form of one unit's weight and bias of a quantized conv (all channels)."""
    wq = layer.weight_quants[unit]
    act_step = layer.input_quant.step()
    bias_step = (wq.step() * act_step).detach()
    bias_int = layer.bias_quant.integer(layer.unit_float_bias(unit).detach(), bias_step)
    codes = wq.integer(layer.unit_float_weight(unit).detach())
    if isinstance(wq, Int8WeightPow2):  # s·q/127: s inside the conv (exact), /127 after
        return UnitQuant(
            codes, bias_int, bias_step, float(act_step), float(wq.range()), None, float(wq.levels)
        )
    if isinstance(wq, TernaryWeightPerChannel):  # s_c·t: codes inside, s_c after
        return UnitQuant(
            codes, bias_int, bias_step, float(act_step), 1.0, wq.scale().detach(), None
        )
    unit_name = layer.platform.units[unit].name
    raise ConfigError(
        f"unit {unit_name}: weight format {layer.platform.units[unit].weight_format!r} "
        f"({type(wq).__name__}) has no integer form for export"
    )


def copy_readout(
    readout: AnalogReadout, channels: Tensor, in_order: Sequence[int]
) -> AnalogReadout:
    """The read-out of a mapped layer for the unit conv that computes `channels` of it and
    reads its input channels in `in_order` (the row tiles stay those of the mapped layer)."""
    out = AnalogReadout(
        readout.adc,
        readout.in_channels,
        (readout.tile_kernel, 1),
        readout.out_channels,
        channels=channels.clone(),
        deploy_noise=readout.deploy_noise,
    )
    out.log2_gain.copy_(readout.log2_gain)
    out.calibrated = readout.calibrated
    if out.tiles > 1 and list(in_order) != list(range(len(in_order))):
        out.column_tiles = torch.tensor(in_order, dtype=torch.long) // out.tile
    return out.to(readout.log2_gain.device)


class UnitConv2d(nn.Conv2d):
    """One unit's share of a split conv: y = conv(x, codes·m, b) · out_scale / out_div.

    The weight holds integer codes times a power of two m, the bias integers times powers of
    two, and the input is on a power-of-two grid, so the accumulation is exact in float32
    (for |Σ codes·levels + bias_int| < 2^24) and does not depend on the summation order; the
    unit's remaining scale is applied once afterwards (`out_scale` per channel, `out_div`).
    """

    cost_exempt = True  # the enclosing SplitConv2d is the layer the cost model sees

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("out_scale", None)
        self.out_div: float | None = None
        #: The analog unit's ADC read-out (see `QuantConv2d.readout_output`) and input step.
        self.readout: AnalogReadout | None = None
        self.act_step: float = 1.0

    def forward(self, x: Tensor) -> Tensor:
        if self.readout is not None:  # (Σ_tiles ADC(p) + b)·act_step, then the unit's scale
            p = self.readout.partial_sums(x / self.act_step, self.weight, self)
            y = (self.readout(p) + self.bias.view(1, -1, 1, 1) / self.act_step) * self.act_step
        else:
            y = self._conv_forward(x, self.weight, self.bias)
        if self.out_scale is not None:
            y = y * self.out_scale
        if self.out_div is not None:
            y = y / self.out_div
        return y

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.out_scale is not None:
            text += ", out_scale=per-channel"
        if self.out_div is not None:
            text += f", out_div={self.out_div:g}"
        return text


class SplitConv2d(nn.Conv2d):
    """A conv computed as one real convolution per compute unit, outputs concatenated.

    Build it with `from_mapped`. Attributes (plain Python, fixed at export time):
        unit_names: the platform's units, in platform order.
        assignment: unit index of every original output channel.
        in_order: original input channel read at each input position.
        out_order: original output channel produced at each output position.
        unit_channels: per unit, the original output channels its conv produces, in order.
        segments: (unit, start, stop) slices of the unit outputs, concatenated in this order.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        groups: int = 1,
        *,
        unit_names: Sequence[str],
        assignment: Sequence[int],
        in_order: Sequence[int] | None = None,
        out_order: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            groups=groups,
            bias=False,
            device="meta",
        )
        # The layer presents a conv's geometry but owns no weight: the units' convs hold them.
        del self.weight
        self.register_parameter("weight", None)
        self.unit_names = tuple(unit_names)
        self.assignment = tuple(int(a) for a in assignment)
        if len(self.assignment) != out_channels:
            raise ValueError(
                f"assignment has {len(self.assignment)} entries, expected {out_channels}"
            )
        if out_order is None:  # digital (first unit) first, then each unit in platform order
            out_order = sorted(range(out_channels), key=lambda c: (self.assignment[c], c))
        if in_order is None:
            in_order = range(in_channels)
        self.in_order = tuple(int(c) for c in in_order)
        self.out_order = tuple(int(c) for c in out_order)
        if sorted(self.out_order) != list(range(out_channels)):
            raise ValueError("out_order must be a permutation of the output channels")
        if sorted(self.in_order) != list(range(in_channels)):
            raise ValueError("in_order must be a permutation of the input channels")
        self.unit_channels = tuple(
            tuple(c for c in self.out_order if self.assignment[c] == u)
            for u in range(len(self.unit_names))
        )
        self.segments = tuple(unit_segments(self.assignment, self.out_order))
        present = [u for u, ch in enumerate(self.unit_channels) if ch]
        self._plain = [s[0] for s in self.segments] == present  # one block per unit, unit order
        depthwise = groups > 1
        if depthwise and (groups != in_channels or groups != out_channels):
            raise ValueError("only ordinary (groups=1) and depthwise convs can be split")
        if depthwise and (len(present) > 1 or self.in_order != self.out_order):
            raise ValueError("a depthwise conv must run on one unit, with in_order == out_order")
        for u, name in enumerate(self.unit_names):
            n = len(self.unit_channels[u])
            conv = self._unit_conv(u, n, device, dtype) if n else None
            self.add_module(name, conv)

    def _unit_conv(
        self, unit: int, n: int, device: torch.device | str | None, dtype: torch.dtype | None
    ) -> UnitConv2d:
        """The conv of a unit holding `n` channels: it reads every input channel (a depthwise
        layer's conv reads its own n)."""
        conv = UnitConv2d(
            self.in_channels,
            n,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            groups=n if self.groups > 1 else 1,
            bias=True,
            device=device,
            dtype=dtype,
        )
        return conv.requires_grad_(False)

    def _unit_weight(self, unit: int, weight: Tensor, rows: Tensor, columns: Tensor) -> Tensor:
        """A unit conv's weight: the unit's rows of the layer's weight, input columns in
        `in_order` (a depthwise layer has one column per row, nothing to reorder)."""
        weight = weight[rows]
        return weight[:, columns] if self.groups == 1 else weight

    def _unit_input(self, unit: int, x: Tensor) -> Tensor:
        """What a unit conv reads: the whole input here."""
        return x

    @classmethod
    def _options_of(cls, layer: MappedConv2d) -> dict:
        """Constructor options a subclass takes from the mapped layer (none here)."""
        return {}

    @classmethod
    @torch.no_grad()
    def from_mapped(
        cls,
        layer: MappedConv2d,
        in_order: Sequence[int] | None = None,
        out_order: Sequence[int] | None = None,
    ) -> SplitConv2d:
        """Split a mapped conv, baking each unit's quantized weight and bias in (see class doc).

        Args:
            layer: the mapped conv (its input quantizer gives the bias step).
            in_order: original input channel at each input position (default: unchanged).
            out_order: original output channel at each output position (default: the first
                unit's channels first, each block in ascending channel order).
        """
        split = cls(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.groups,
            unit_names=layer.platform.unit_names,
            assignment=layer.assignment.tolist(),
            in_order=in_order,
            out_order=out_order,
            device=layer.weight.device,
            dtype=layer.weight.dtype,
            **cls._options_of(layer),
        )
        columns = torch.tensor(split.in_order, dtype=torch.long, device=layer.weight.device)
        for u, conv in split.unit_convs():
            rows = torch.tensor(
                split.unit_channels[u], dtype=torch.long, device=layer.weight.device
            )
            q = unit_quantization(layer, u)
            weight = q.conv_weight(conv.weight.dtype)
            conv.weight.copy_(split._unit_weight(u, weight, rows, columns))
            conv.bias.copy_(q.conv_bias(conv.bias.dtype)[rows])
            if q.out_scale is not None:
                conv.out_scale = q.out_scale[rows].view(1, -1, 1, 1).to(conv.weight.dtype)
            conv.out_div = q.out_div
            if u == layer.readout_unit:
                conv.readout = copy_readout(layer.readout, rows, split.in_order)
                conv.act_step = q.act_step
        return split

    def unit_convs(self) -> list[tuple[int, nn.Conv2d]]:
        """(unit index, conv) of every unit that holds channels."""
        return [
            (u, getattr(self, name))
            for u, name in enumerate(self.unit_names)
            if getattr(self, name) is not None
        ]

    def hard_assignment(self) -> Tensor:
        """Unit index of every original output channel [C_out] (long), as in the mapped conv."""
        return torch.tensor(self.assignment, dtype=torch.long)

    def unit_counts(self) -> Tensor:
        """Channels on each unit [U] (float, like `QuantConv2d.unit_counts(soft=False)`)."""
        return torch.tensor([float(len(ch)) for ch in self.unit_channels])

    def forward(self, x: Tensor) -> Tensor:
        outs = {u: conv(self._unit_input(u, x)) for u, conv in self.unit_convs()}
        if self._plain:
            parts = list(outs.values())
        else:
            parts = [outs[u][:, start:stop] for u, start, stop in self.segments]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def extra_repr(self) -> str:
        k, s, p = self.kernel_size, self.stride, self.padding
        counts = ", ".join(f"{n}={len(ch)}" for n, ch in zip(self.unit_names, self.unit_channels))
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={k}, stride={s}, padding={p}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return f"{text}, {counts}, segments={len(self.segments)}"


class ExportActQuant(nn.Module):
    """Inference-only unsigned PaCT quantizer with constants: floor(clamp(x, 0, clip)·sf)/sf.

    Computes exactly what `UintActPact` computes at inference, with plain torch ops and no
    autograd Function, so that it exports to ONNX as Clip, Mul, Floor, Div.

    Args:
        clip: the clip a (float).
        scale_exp: k with sf = 2^k (the step is 2^-k).
        bits: activation bits (for reports).
    """

    def __init__(self, clip: float, scale_exp: int, bits: int = 7):
        super().__init__()
        self.clip = float(clip)
        self.scale_exp = int(scale_exp)
        self.scale = float(2.0**self.scale_exp)
        self.bits = int(bits)

    @classmethod
    def from_pact(cls, act: nn.Module) -> ExportActQuant:
        """Freeze a `UintActPact` at its current clip."""
        return cls(float(act.clip.detach()), pow2_exponent(float(act.scale())), act.bits)

    def forward(self, x: Tensor) -> Tensor:
        return torch.floor(torch.clamp(x, 0.0, self.clip) * self.scale) / self.scale

    def extra_repr(self) -> str:
        return f"bits={self.bits}, clip={self.clip:.6g}, scale=2^{self.scale_exp}"
