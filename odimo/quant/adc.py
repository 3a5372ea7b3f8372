# SPDX-License-Identifier: Apache-2.0
"""The analog core's quantized read-out: tiled partial sums, a 6-bit ADC, noise.

`AnalogReadout` turns the integer partial sums of a ternary conv into what DIANA's analog core
delivers (`odimo.hw.analog` holds the facts): per row tile, q = clamp(floor(p/g + n), qmin, qmax),
summed over tiles, returned in partial-sum units (Σ q·g) so that the caller adds the bias and
applies the per-channel scale exactly as for the exact sum.

Exactness: the inputs are 7-bit activation codes (integers <= 127) and the weights ternary codes,
so a tile's sum is an integer of magnitude <= rows·127 (146 304 for 1152 rows) < 2^24: exact in
float32, whatever the summation order. g is a power of two, so p/g and Σq·g are exact too.

Speed: the tiles are ONE grouped conv (the tile index folded into the group dimension), the
read-out elementwise; no host syncs after the gain is set. The gain is set once, from the first
batch it sees (a calibration batch: a high percentile of |p| lands at qmax), and is a persistent
buffer, so checkpoints and exports carry it.
"""

from __future__ import annotations

import math
import zlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odimo.hw.analog import AdcConfig, NoiseConfig

#: Percentile of |p| on the calibration batch that the gain maps to the ADC's top code.
GAIN_PERCENTILE = 0.999
#: Elements of the calibration batch used for the percentile (a strided subsample beyond this).
GAIN_SAMPLE = 1 << 20
#: Value of the gain buffer before calibration.
UNSET = -1.0


def gain_exponent(partial_sums: Tensor, qmax: int, percentile: float = GAIN_PERCENTILE) -> int:
    """log2 of the power-of-two gain g >= 1 that maps the `percentile` of |p| to <= qmax."""
    flat = partial_sums.detach().abs().flatten().float()
    if flat.numel() > GAIN_SAMPLE:
        flat = flat[:: math.ceil(flat.numel() / GAIN_SAMPLE)]
    top = float(torch.quantile(flat, percentile)) if flat.numel() else 0.0
    if top <= qmax:
        return 0
    return max(0, math.ceil(math.log2(top / qmax)))


class _FloorClamp(torch.autograd.Function):
    """clamp(floor(v), lo, hi); gradient 1 where floor(v) is inside [lo, hi], else 0."""

    @staticmethod
    def forward(ctx, v: Tensor, lo: int, hi: int) -> Tensor:
        q = torch.floor(v)
        ctx.save_for_backward((q >= lo) & (q <= hi))
        return q.clamp_(lo, hi)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None


def floor_clamp_ste(v: Tensor, lo: int, hi: int) -> Tensor:
    """The ADC's rounding: clamp(floor(v), lo, hi), straight-through inside the range.

    >>> v = torch.tensor([-40.0, -31.5, 0.5, 31.5, 40.0], requires_grad=True)
    >>> q = floor_clamp_ste(v, -32, 31); q.sum().backward()
    >>> q.tolist(), v.grad.tolist()
    ([-32.0, -32.0, 0.0, 31.0, 31.0], [0.0, 1.0, 1.0, 1.0, 0.0])
    """
    return _FloorClamp.apply(v, lo, hi)


class AnalogReadout(nn.Module):
    """Tiled partial sums of a ternary conv and their ADC read-out (one per analog layer).

    Args:
        adc: the ADC (bits, rows per read-out).
        in_channels, kernel_size, groups: the conv's geometry (rows = C_in·K_y·K_x).
        channels: original output channels the conv computes, when it computes a subset (the
            split form), so that seeded noise is the same in every form of the network.
        out_channels: the original layer's output channels (the noise draw's channel size).
    """

    def __init__(
        self,
        adc: AdcConfig,
        in_channels: int,
        kernel_size: tuple[int, int],
        out_channels: int,
        channels: Tensor | None = None,
    ):
        super().__init__()
        self.adc = adc
        self.in_channels = in_channels
        self.tile_kernel = kernel_size[0] * kernel_size[1]  # kernel positions (rows per channel)
        self.tile = adc.tile_channels(self.tile_kernel, in_channels)
        self.tiles = math.ceil(in_channels / self.tile)
        self.out_channels = out_channels
        # log2 of the gain; UNSET until the first batch (a calibration batch) sets it
        self.register_buffer("log2_gain", torch.tensor(UNSET))
        self.register_buffer("channels", channels, persistent=False)
        #: Tile of each input column when the columns are a permutation of the layer's input
        #: channels (the split form); None = columns in channel order, contiguous tiles.
        self.register_buffer("column_tiles", None, persistent=False)
        self.calibrated = False
        self.noise: NoiseConfig | None = None
        self.generator: torch.Generator | None = None

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, *args):
        # A checkpoint of a network trained without the read-out has no gain: calibrate later.
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, *args)
        if prefix + "log2_gain" in missing:
            missing.remove(prefix + "log2_gain")
        self.calibrated = bool(self.log2_gain >= 0)  # one host sync, at load time only

    def reset(self) -> None:
        """Forget the gain: the next batch calibrates it again."""
        self.log2_gain.fill_(UNSET)
        self.calibrated = False

    def gain(self) -> Tensor:
        """The power-of-two gain g (a 0-d tensor)."""
        return torch.pow(2.0, self.log2_gain)  # (exp2 has no ONNX export)

    @torch.no_grad()
    def calibrate(self, partial_sums: Tensor) -> None:
        """Set the gain from a batch of tile partial sums (see `gain_exponent`)."""
        self.log2_gain.fill_(float(gain_exponent(partial_sums, self.adc.qmax)))
        self.calibrated = True

    def tiled(self, weight: Tensor) -> tuple[Tensor, int, int]:
        """The ONE conv computing every tile's partial sums with `weight` [C, C_in, K_y, K_x]:
        (its weight [tiles·C, C_in/groups, K_y, K_x], tile-major; its groups; the input
        channels to pad with zeros). The exports bake this weight in once."""
        if self.tiles == 1:
            return weight, 1, 0
        c = weight.shape[0]
        if self.column_tiles is not None:  # permuted columns: one masked copy per tile
            tiles = torch.arange(self.tiles, device=weight.device)
            mask = (self.column_tiles.view(1, -1) == tiles.view(-1, 1)).to(weight.dtype)
            masked = weight.unsqueeze(0) * mask.view(self.tiles, 1, -1, 1, 1)
            return masked.flatten(0, 1), 1, 0
        pad = self.tiles * self.tile - self.in_channels
        if pad:
            weight = F.pad(weight, (0, 0, 0, 0, 0, pad))
        # [C, tiles·tile, k, k] -> [tiles·C, tile, k, k]: group j reads input channels of tile j
        grouped = weight.view(c, self.tiles, self.tile, *weight.shape[2:]).transpose(0, 1)
        return grouped.reshape(self.tiles * c, self.tile, *weight.shape[2:]), self.tiles, pad

    def partial_sums(self, codes: Tensor, weight: Tensor, conv: nn.Conv2d) -> Tensor:
        """Integer partial sums [N, tiles, C, H, W] of `conv`'s geometry over `codes` (input
        activation codes) with ternary `weight` [C, C_in, K_y, K_x] (no bias)."""
        stride, padding, dilation = conv.stride, conv.padding, conv.dilation
        if self.tiles == 1:
            return F.conv2d(codes, weight, None, stride, padding, dilation).unsqueeze(1)
        tiled, groups, pad = self.tiled(weight)
        if pad:
            codes = F.pad(codes, (0, 0, 0, 0, 0, pad))
        out = F.conv2d(codes, tiled, None, stride, padding, dilation, groups)
        return out.view(out.shape[0], self.tiles, weight.shape[0], *out.shape[2:])

    def standard_noise(self, shape: tuple[int, int, int, int], like: Tensor) -> Tensor:
        """N(0, 1) draws [N, tiles, C, H, W] for shape (N, tiles, H, W): drawn for all the
        layer's output channels, then those this conv computes (`channels`) picked, so a
        seeded draw is the same in every form of the network."""
        n, tiles, h, w = shape
        full = (n, tiles, self.out_channels, h, w)
        if self.generator is not None:  # a seeded draw (evaluation): CPU generator
            z = torch.randn(full, generator=self.generator, dtype=like.dtype).to(like.device)
        else:
            z = torch.randn(full, dtype=like.dtype, device=like.device)
        if self.channels is not None:
            z = z.index_select(2, self.channels.to(z.device))
        return z

    def scale_noise(self, z: Tensor, p: Tensor) -> Tensor:
        """Noise in LSB from standard draws z for partial sums p (same shapes)."""
        if self.noise.snr > 0:
            return z * (p.detach().abs() / (self.gain().to(p.dtype) * self.noise.snr))
        return z * self.noise.sigma_lsb

    def draw_noise(self, p: Tensor) -> Tensor | None:
        """Noise in LSB for partial sums p [N, tiles, C, H, W] (None when noiseless)."""
        if self.noise is None or self.noise.silent:
            return None
        z = self.standard_noise((p.shape[0], p.shape[1], p.shape[3], p.shape[4]), p)
        return self.scale_noise(z, p)

    def forward(self, p: Tensor) -> Tensor:
        """Σ over tiles of clamp(floor(p/g + n), qmin, qmax)·g [N, C, H, W], straight-through
        gradients through the floor (identity) and the clamp (zero outside the range)."""
        if not self.calibrated:
            self.calibrate(p)
        g = self.gain().to(p.dtype)
        v = p / g
        n = self.draw_noise(p)
        if n is not None:
            v = v + n
        if torch.is_grad_enabled() and v.requires_grad:
            return floor_clamp_ste(v, self.adc.qmin, self.adc.qmax).sum(1) * g
        # inference (and the training correction, the ONNX export): in place, plain ops
        q = v.floor_().clamp_(self.adc.qmin, self.adc.qmax)
        q = q.sum(1) if q.shape[1] > 1 else q.squeeze(1)
        return q.mul_(g)

    def extra_repr(self) -> str:
        return (
            f"bits={self.adc.bits}, rows={self.adc.rows}, tile={self.tile}, tiles={self.tiles}, "
            f"gain={f'2^{int(self.log2_gain)}' if self.calibrated else 'uncalibrated'}"
        )


def readouts(model: nn.Module) -> list[AnalogReadout]:
    """Every analog read-out of a model, in module order (the order seeds follow)."""
    return [m for m in model.modules() if isinstance(m, AnalogReadout)]


@torch.no_grad()
def calibrate_readouts(model: nn.Module, batch: Tensor, keep_calibrated: bool = False) -> int:
    """Set every read-out's gain from one batch (eval-mode forward); returns how many were set.

    With `keep_calibrated`, gains already set (e.g. loaded from a checkpoint) are kept and only
    the others are calibrated (on the inputs the calibrated layers produce)."""
    found = [r for r in readouts(model) if not (keep_calibrated and r.calibrated)]
    for r in found:
        r.reset()
    if found:
        was = model.training
        model.eval()
        model(batch)
        model.train(was)
    return len(found)


def set_readout_noise(model: nn.Module, noise: NoiseConfig | None, seed: int | None = None) -> None:
    """Read out with `noise` (None = noiseless). With a `seed`, each read-out draws from its own
    generator seeded from (seed, layer name), so a draw is reproducible and the same in every
    form of the network; without one, from the global RNG (a fresh draw per batch, training)."""
    for name, r in model.named_modules():
        if not isinstance(r, AnalogReadout):
            continue
        layer = name.removesuffix(".readout")
        if r.channels is not None:  # a unit conv of a split layer: <layer>.<unit>.readout
            layer = layer.rpartition(".")[0]
        r.noise = noise
        key = zlib.crc32(layer.encode()) + 1_000_003 * (seed or 0)
        r.generator = None if seed is None else torch.Generator().manual_seed(key)
