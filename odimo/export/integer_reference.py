# SPDX-License-Identifier: Apache-2.0
"""A bit-exact integer execution of the deployed network: the yardstick of the chip's arithmetic.

`integer_reference(mapped_model)` copies a mapped model and replaces every quantized conv by an
`IntegerConv`, which computes what the chip computes, in int64:

- inputs become 7-bit codes x_int = x · 2^k (exact: the input is on the activation grid);
- digital channels: acc = Σ q·x_int + b (int8 codes q, 16-bit bias codes b);
- analog channels: per row tile of floor(rows / (K_y·K_x)) input channels, p = Σ t·x_int
  (ternary t), read out as clamp(p >> log2 g, qmin, qmax) (an arithmetic shift: the floor of
  p / g), or with seeded noise clamp(floor(p/g + n)) drawn exactly as the network draws it;
  acc = Σ_tiles q·g + b;
- requantisation: y = acc · 2^-k_in · 2^e / 127 (digital) or acc · 2^-k_in · s_c (analog), the
  ONE rounding the deployed network makes, in its dtype; the next activation quantizer
  floor(clamp(y, 0, clip) · 2^k) and the residual adds and pools are the network's own modules
  (exact on the power-of-two grid).

The convolutions run as im2col + int64 matrix products (no float accumulation anywhere), so
equality with the network's hard evaluation checks that its float32 arithmetic is exact.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odimo.export.reference import with_quant_layers_replaced
from odimo.nn.conv import QuantConv2d
from odimo.nn.split import unit_quantization
from odimo.quant.adc import rounding_offset

#: Images per im2col block (bounds the int64 column matrix's memory).
BLOCK = 32


class IntegerConv(nn.Module):
    """One quantized conv of a mapped network computed in int64 (see the module doc)."""

    def __init__(self, layer: QuantConv2d):
        super().__init__()
        if layer.groups != 1 and len(layer.active_units()) > 1:
            raise ValueError("a grouped conv must run on one unit")
        self.geometry = (layer.kernel_size, layer.stride, layer.padding, layer.dilation)
        self.groups, self.out_channels = layer.groups, layer.out_channels
        self.act_exp = -int(torch.log2(layer.input_quant.step()).item())  # x_int = x · 2^k
        assignment = layer.hard_assignment().cpu()
        self.units = []
        for u in sorted(set(assignment.tolist())):
            rows = torch.nonzero(assignment == u).flatten()
            q = unit_quantization(layer, u)
            self.units.append(
                {
                    "rows": rows,
                    "codes": q.codes.cpu()[rows].long().flatten(1),  # [n, C_in/g·K_y·K_x]
                    "bias": q.bias_int.cpu()[rows].long(),
                    "weight_mult": q.weight_mult,
                    "out_scale": None if q.out_scale is None else q.out_scale.cpu()[rows],
                    "out_div": q.out_div,
                    "dtype": layer.accumulation_dtype(u),
                    "readout": u == layer.readout_unit,
                }
            )
        self.readout = copy.deepcopy(layer.readout) if layer.readout_unit is not None else None
        #: The layer itself, for inputs off every power-of-two grid (a global average over a
        #: non-power-of-two area, e.g. 7x7): the chip's pooling is not modelled, so such a layer
        #: runs as the network runs it and `float_fallbacks` counts the batches that did.
        self.layer = copy.deepcopy(layer)
        self.float_fallbacks = 0

    def columns(self, x_int: Tensor) -> Tensor:
        """im2col of the integer input [N, L, C_in·K_y·K_x] (int64; channel-major columns)."""
        kernel, stride, padding, dilation = self.geometry
        cols = F.unfold(x_int.double(), kernel, dilation, padding, stride)  # exact integers
        return cols.transpose(1, 2).round().long()

    def read_out(
        self, cols: Tensor, codes: Tensor, shape: tuple[int, ...], rows: Tensor, frac: int
    ) -> Tensor:
        """Σ over row tiles of the ADC codes times the gain [N, L, n] (int64); the columns
        hold the inputs times 2^frac (see `_block`), so p·2^frac is what the products give."""
        r = self.readout
        adc, span = r.adc, r.tile * r.tile_kernel
        log2_gain = int(r.log2_gain.item())
        g = float(2**log2_gain)
        sums = []
        for j in range(r.tiles):
            p = cols[..., j * span : (j + 1) * span] @ codes[:, j * span : (j + 1) * span].T
            sums.append(p)
        p = torch.stack(sums, 1)  # [N, tiles, L, n]
        noise = self.noise(shape, r.tiles, rows, p, frac)
        if noise is None:
            q = p >> (log2_gain + frac)  # floor(p / g), g a power of two
        else:  # the network's float32 ops (p/2^frac and p/g are exact)
            q = torch.floor(p.float() / 2.0**frac / g + noise).long()
        offset = r.tiles * rounding_offset(log2_gain)  # the digital bias add carries it
        return q.clamp(adc.qmin, adc.qmax).sum(1) * (2**log2_gain) + offset

    def noise(
        self, shape: tuple[int, ...], tiles: int, rows: Tensor, p: Tensor, frac: int
    ) -> Tensor | None:
        """The network's seeded noise draw in LSB [N, tiles, L, n], or None when noiseless."""
        r = self.readout
        if r.noise is None or r.noise.silent:
            return None
        n, oh, ow, _ = shape
        z = r.standard_noise((n, tiles, oh, ow), p.float())[:, :, rows]  # [N, tiles, n, H, W]
        z = z.flatten(3).transpose(2, 3)  # [N, tiles, L, n], L = H·W row-major as im2col
        return r.scale_noise(z, p.float() / 2.0**frac)

    def float32_exact(self, x_int: Tensor) -> bool:
        """Whether the network's float32 conv sums this finer-grid input exactly: every sum of
        |inputs|·|codes| (integers, times 2^frac) below 2^24 (depthwise: a bound from the
        largest input). Otherwise the network's float32 rounds these sums, and the reference
        runs the layer as the network does (the chip's own pooling is not modelled)."""
        limit = 2**24
        if self.groups != 1:
            largest = int(x_int.abs().max())
            return all(largest * int(u["codes"].abs().sum(1).max()) < limit for u in self.units)
        cols = self.columns(x_int).abs()
        return all(int((cols @ u["codes"].abs().T).max()) < limit for u in self.units)

    def forward(self, x: Tensor) -> Tensor:
        out = []
        for start in range(0, len(x), BLOCK):
            out.append(self._block(x[start : start + BLOCK]))
        return torch.cat(out)

    def _block(self, x: Tensor) -> Tensor:
        # Inputs are codes on the 2^-k grid; a global-average-pooled input (the classifier's)
        # is finer: scale by 2^frac more until every value is an integer (exact in float64).
        frac = 0
        x_int = x.double() * 2.0**self.act_exp
        while not torch.equal(x_int, torch.round(x_int)):
            if frac >= 24:
                self.float_fallbacks += 1
                with torch.no_grad():
                    return self.layer(x)
            frac, x_int = frac + 1, x_int * 2
        if frac and not self.float32_exact(x_int):
            self.float_fallbacks += 1
            with torch.no_grad():
                return self.layer(x)
        kernel, stride, padding, dilation = self.geometry
        n, _, h, w = x.shape
        oh = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
        ow = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
        y = torch.zeros(n, oh * ow, self.out_channels, dtype=torch.float32)
        step = 2.0 ** -(self.act_exp + frac)
        for u in self.units:
            # depthwise: channel c reads only input channel c
            cols = self.columns(x_int if self.groups == 1 else x_int[:, u["rows"]])
            if u["readout"]:
                shape = (n, oh, ow, len(u["rows"]))
                acc = self.read_out(cols, u["codes"], shape, u["rows"], frac) * 2**frac
            elif self.groups == 1:
                acc = cols @ u["codes"].T
            else:
                k = u["codes"].shape[1]
                acc = (cols.view(n, oh * ow, -1, k) * u["codes"]).sum(-1)
            acc = acc + u["bias"] * 2**frac
            dtype = torch.float32 if u["readout"] else u["dtype"]
            v = acc.to(dtype) * (step * u["weight_mult"])
            if u["out_scale"] is not None:
                v = v * u["out_scale"].to(dtype)
            if u["out_div"] is not None:
                v = v / u["out_div"]
            y[:, :, u["rows"]] = v.float()
        return y.transpose(1, 2).reshape(n, self.out_channels, oh, ow)


def float_layers(reference: nn.Module) -> list[str]:
    """Layers of an integer reference that ran in float for some input (see `IntegerConv`)."""
    return [n for n, m in reference.named_modules() if getattr(m, "float_fallbacks", 0)]


@torch.no_grad()
def integer_reference(mapped_model: nn.Module) -> nn.Module:
    """A CPU copy of a mapped model whose quantized convs compute in int64 (module doc)."""
    return with_quant_layers_replaced(mapped_model, IntegerConv)
