# SPDX-License-Identifier: Apache-2.0
"""The analog core's quantized read-out: tiled partial sums, a 6-bit ADC, noise.

`AnalogReadout` turns the integer partial sums of a ternary conv into what DIANA's analog core
delivers (`odimo.hw.analog` holds the facts): per row tile, q = clamp(floor(p/g + n), qmin, qmax),
summed over tiles, returned in partial-sum units (Σ q·g + ⌊g/2⌋, the half-LSB offset the digital
bias add carries: `rounding_offset`) so that the caller adds the bias and applies the per-channel
scale exactly as for the exact sum.

Exactness: the inputs are 7-bit activation codes (integers <= 127) and the weights ternary codes,
so a tile's sum is an integer of magnitude <= rows·127 (146 304 for 1152 rows) < 2^24: exact in
float32, whatever the summation order. g is a power of two, so p/g and Σq·g are exact too.

Speed: the tiles are ONE grouped conv (the tile index folded into the group dimension), the
read-out elementwise; no host syncs after the gain is set. The gain is set from a calibration
batch (the first batch a layer sees, or `calibrate_readouts`, which training repeats as the
weights move): the power of two with the least expected read-out error at the deployment noise
(`gain_exponent`). It is a persistent buffer, so checkpoints and exports carry it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odimo.errors import ConfigError
from odimo.hw.analog import AdcConfig, NoiseConfig
from odimo.quant import fused

#: Elements of the calibration batch the gain rule evaluates (a seeded sample beyond this).
GAIN_SAMPLE = 1 << 13
#: Largest gain exponent considered (g = 2^24 reads any float32-exact partial sum unclipped).
MAX_EXPONENT = 24
#: Value of the gain buffer before calibration.
UNSET = -1.0


def rounding_offset(log2_gain: int) -> int:
    """The read-out's half-LSB offset ⌊g/2⌋ in partial-sum units, added digitally per tile.

    The ADC floors: floor(p/g)·g is on average g/2 below p (for g >= 2; exact for g = 1). The
    compiler folds ⌊g/2⌋ per tile into the digital bias add, so the read-out reconstructs the
    middle of each code's interval: Σ_tiles (q·g + ⌊g/2⌋). An integer, like the bias codes.

    >>> [rounding_offset(e) for e in range(4)]
    [0, 1, 2, 4]
    """
    return (1 << log2_gain) >> 1


def readout_error(v: Tensor, offset: float, lo: int, hi: int, sigma: Tensor | float) -> Tensor:
    """Expected squared error E_n[(clamp(floor(v + n), lo, hi) + offset − v)²] per element,
    n ~ N(0, σ²) (σ in LSB: a number, or a tensor like v). Exact up to 1e-9: the floor values
    within ±(6σ + 1) of v, each weighted by its probability."""
    if not torch.is_tensor(sigma) and sigma == 0:
        return (torch.floor(v).clamp(lo, hi) + offset - v).square()
    sigma = torch.as_tensor(sigma, dtype=v.dtype, device=v.device).expand_as(v)
    reach = math.ceil(6 * float(sigma.max())) + 1
    edges = torch.floor(v).unsqueeze(-1) + torch.arange(-reach, reach + 2, dtype=v.dtype)
    s, x = sigma.clamp_min(1e-12).unsqueeze(-1), v.unsqueeze(-1)
    prob = torch.diff(torch.special.ndtr((edges - x) / s), dim=-1)  # P(floor(v + n) = k)
    k = edges[..., :-1]
    return (prob * (k.clamp(lo, hi) + offset - x).square()).sum(-1)


def lsb_sigma(v: Tensor, noise: NoiseConfig | None) -> Tensor | float:
    """The noise std in LSB for read-out inputs v = p/g: `noise.sigma_lsb` (additive), |v|/snr
    (relative, `snr` > 0), 0 without noise."""
    if noise is None:
        return 0.0
    return v.abs() / noise.snr if noise.snr > 0 else noise.sigma_lsb


def sample_index(numel: int) -> Tensor:
    """The gain rule's sample of a calibration batch of `numel` elements: `GAIN_SAMPLE` flat
    indices drawn uniformly with a fixed seed (a stride would alias the feature maps)."""
    return torch.randint(numel, (GAIN_SAMPLE,), generator=torch.Generator().manual_seed(0))


def channel_sample(shape: torch.Size, channels: Tensor | None) -> Tensor:
    """Flat indices into partial sums of `shape` [N, tiles, C, ...] of what the gain rule reads:
    the elements of the channels `channels` (bool [C]; all when None or none) in their order,
    or, when they are more than `GAIN_SAMPLE`, the seeded sample `gain_exponent` draws from
    them; the same elements as `gain_exponent(sums[:, :, channels])` reads, without the copy of
    the channels (or, `QuantConv2d.read_off_output`, without the sums as one tensor at all)."""
    lead, c, rest = shape[0] * shape[1], shape[2], math.prod(shape[3:])
    picked = None
    if channels is not None and bool(channels.any()):
        picked = torch.nonzero(channels.cpu()).flatten()
    k = c if picked is None else picked.numel()
    numel = lead * k * rest
    pos = sample_index(numel) if numel > GAIN_SAMPLE else torch.arange(numel)
    j = torch.div(pos, rest, rounding_mode="floor")
    channel = j % k if picked is None else picked[j % k]
    return (torch.div(j, k, rounding_mode="floor") * c + channel) * rest + pos % rest


def gain_exponent(partial_sums: Tensor, lo: int, hi: int, noise: NoiseConfig | None = None) -> int:
    """log2 of the power-of-two gain g >= 1 whose read-out Σ(q·g + ⌊g/2⌋) is closest to p:
    the argmin over exponents of the expected squared error on the calibration batch, under the
    deployment `noise` (None: noiseless). A wide gain wastes codes and amplifies the noise
    (both ∝ g²); a narrow one clips the tails: the trade-off is the data's, not a percentile's.

    The search starts at the narrowest gain that clips nothing (wider ones only add error) and
    narrows it until the error has risen twice in a row (it falls, then rises, with the
    clipping).
    """
    flat = partial_sums.detach().reshape(-1)
    if flat.numel() > GAIN_SAMPLE:
        flat = flat[sample_index(flat.numel()).to(flat.device)]
    flat = flat.double()  # (the sample only: the whole batch in double is a pass of its own)
    top = float(flat.abs().max()) if flat.numel() else 0.0
    widest = max(0, math.ceil(math.log2(top / hi))) if top > hi else 0
    # integer sums repeat: each distinct one's expected error once, then one per element (the
    # same values in the same order as per element, so the same sum)
    values, inverse = torch.unique(flat, return_inverse=True)
    best, best_err, rises = widest, math.inf, 0
    for e in range(min(widest, MAX_EXPONENT), -1, -1):
        g = float(2**e)
        v = values / g
        sigma = lsb_sigma(v, noise)
        err = readout_error(v, rounding_offset(e) / g, lo, hi, sigma)[inverse]
        err = float(err.sum()) * g * g
        if err < best_err:
            best, best_err, rises = e, err, 0
        else:
            rises += 1
            if rises == 2:
                break
    return best


#: Generators of the unseeded (training) noise draws (`set_training_draws`).
TRAINING_DRAWS = ("counter", "torch")


class _TrainingDraws:
    generator = "counter"


def set_training_draws(generator: str, key: str = "train.noise_generator") -> None:
    """The generator of the read-out's unseeded noise draws, those of chip-aware training:
    ``counter`` (the default: `odimo.quant.fused.counter_normal`, near-Gaussian, one parallel
    pass, its key drawn from torch's global RNG each time, so seeded jobs repeat) or ``torch``
    (`torch.randn`: exactly Gaussian, about 3× slower on a CPU core). Seeded draws
    (evaluation, checkpoint choice, exports) are always torch's Gaussian ones. Anything else
    is one config-error line naming config key `key`."""
    if generator not in TRAINING_DRAWS:
        raise ConfigError(f"{key}={generator!r} is not one of: {', '.join(TRAINING_DRAWS)}")
    _TrainingDraws.generator = generator


def training_draws() -> str:
    """The generator of the unseeded noise draws (`set_training_draws`)."""
    return _TrainingDraws.generator


#: Seeded noise draws the output layer's gain rule scores each exponent over.
DECISION_DRAWS = 8
#: Exponents below and above the least-error one that the output layer's rule considers.
DECISION_SPAN = (4, 2)


def decision_gain_exponent(
    partial_sums: Tensor,
    bias: Tensor,
    scale: Tensor,
    lo: int,
    hi: int,
    noise: NoiseConfig | None = None,
    draws: int = DECISION_DRAWS,
) -> int:
    """log2 of the gain of a network's OUTPUT layer: the exponent whose read-out keeps the
    network's decision, not the one closest to the sums.

    partial_sums [N, tiles, C] are one calibration batch's sums of the layer's channels (the
    logits (Σ_tiles read-out + bias)·scale, bias codes and per-channel scale [C] or [1]). Each
    exponent within `DECISION_SPAN` of the least-error one (`gain_exponent`) is scored by how
    often the argmax over channels of the read-out logits equals that of the exact sums, over
    `draws` seeded draws of the deployment `noise` (one noiseless read-out without noise); the
    best score wins, ties go to the exponent nearest the least-error one. Why: for logits the
    squared error weighs a clipped large logit (which usually still wins) like noise on the
    close ones (which flips the decision); on the all-analog Fashion-MNIST ResNet20 of
    docs/chip.md the least-error rule chose one power of two too wide for the chip-aware
    network's classifier (81.50 vs 82.45 % at σ = 1), and this rule chooses the better one on
    128 training images for both the chip-aware and the exact-sum networks.
    """
    sums = partial_sums.detach().double()
    bias = bias.detach().double().flatten()
    scale = scale.detach().double().flatten()
    exact = ((sums.sum(1) + bias) * scale).argmax(-1)
    least = gain_exponent(partial_sums, lo, hi, noise)
    silent = noise is None or noise.silent
    generator = torch.Generator().manual_seed(0)
    z = torch.randn((1 if silent else draws, *sums.shape), generator=generator, dtype=sums.dtype)
    z = z.to(sums.device)
    below, above = DECISION_SPAN
    scored = []
    for e in range(max(0, least - below), min(MAX_EXPONENT, least + above) + 1):
        g = float(2**e)
        v = sums / g
        if not silent:
            v = v + z * lsb_sigma(v, noise)
        read = (torch.floor(v).clamp_(lo, hi) * g + rounding_offset(e)).sum(-2)
        agree = ((read + bias) * scale).argmax(-1).eq(exact).double().mean()
        scored.append((-float(agree), abs(e - least), e))
    return min(scored)[2]


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
        deploy_noise: the deployment noise the gain is chosen for (`gain_exponent`).
    """

    def __init__(
        self,
        adc: AdcConfig,
        in_channels: int,
        kernel_size: tuple[int, int],
        out_channels: int,
        channels: Tensor | None = None,
        deploy_noise: NoiseConfig | None = None,
    ):
        super().__init__()
        self.adc = adc
        self.deploy_noise = deploy_noise
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

    def offset(self) -> Tensor:
        """Σ over tiles of the rounding offset ⌊g/2⌋ (`rounding_offset`; a 0-d tensor)."""
        return torch.floor(self.gain() / 2) * self.tiles

    @torch.no_grad()
    def calibrate(
        self,
        partial_sums: Tensor,
        channels: Tensor | None = None,
        decision: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        """Set the gain from a batch of tile partial sums [N, tiles, C, H, W] (see
        `gain_exponent`); `channels` (bool [C]) restricts it to the channels read out. With
        `decision` (the bias codes and per-channel scale of a network's output layer, every
        channel read out, H = W = 1), the gain that keeps the decision
        (`decision_gain_exponent`)."""
        if decision is not None:
            lo, hi = self.adc.qmin, self.adc.qmax
            sums = partial_sums.flatten(2)
            e = decision_gain_exponent(sums, *decision, lo, hi, self.deploy_noise)
            self.log2_gain.fill_(float(e))
            self.calibrated = True
            return
        flat = partial_sums.reshape(-1)
        self.calibrate_from(partial_sums.shape, lambda i: flat[i.to(flat.device)], channels)

    @torch.no_grad()
    def calibrate_from(
        self, shape: torch.Size, take: Callable[[Tensor], Tensor], channels: Tensor | None
    ) -> None:
        """`calibrate` from partial sums of `shape` that need not exist as a tensor: `take`
        gives them at flat indices (a CPU tensor from `channel_sample`: at most `GAIN_SAMPLE`
        of them)."""
        sample = take(channel_sample(shape, channels))
        e = gain_exponent(sample, self.adc.qmin, self.adc.qmax, self.deploy_noise)
        self.log2_gain.fill_(float(e))
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
        seeded draw is the same in every form of the network. Seeded draws (evaluation) are
        torch's Gaussian ones; unseeded ones (training) come from the generator
        `set_training_draws` chose (torch's for draws of 2^31 elements or more, which the
        counter-based one's int32 index cannot count)."""
        n, tiles, h, w = shape
        full = (n, tiles, self.out_channels, h, w)
        if self.generator is not None:  # a seeded draw (evaluation): CPU generator
            z = torch.randn(full, generator=self.generator, dtype=like.dtype).to(like.device)
        elif _TrainingDraws.generator == "counter" and math.prod(full) < 2**31:  # training
            key = torch.randint(-(2**31), 2**31 - 1, (2,), dtype=torch.int32, device=like.device)
            shaped = torch.empty(full, dtype=like.dtype, device=like.device)
            z = fused.call("counter_normal", shaped, key)
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

    @property
    def noiseless(self) -> bool:
        """Whether the read-out draws no noise now."""
        return self.noise is None or self.noise.silent

    def draw_noise(self, p: Tensor) -> Tensor | None:
        """Noise in LSB for partial sums p [N, tiles, C, H, W] (None when noiseless)."""
        if self.noiseless:
            return None
        z = self.standard_noise((p.shape[0], p.shape[1], p.shape[3], p.shape[4]), p)
        return self.scale_noise(z, p)

    def forward(self, p: Tensor) -> Tensor:
        """Σ over tiles of clamp(floor(p/g + n), qmin, qmax)·g + ⌊g/2⌋ [N, C, H, W],
        straight-through gradients through the floor (identity) and the clamp (zero outside
        the range); see `rounding_offset` for the ⌊g/2⌋ the digital bias add carries."""
        if not self.calibrated:
            self.calibrate(p)
        g = self.gain().to(p.dtype)
        v = p / g
        n = self.draw_noise(p)
        if n is not None:
            v = v + n
        offset = self.offset().to(p.dtype)
        if torch.is_grad_enabled() and v.requires_grad:
            return floor_clamp_ste(v, self.adc.qmin, self.adc.qmax).sum(1) * g + offset
        # inference (and the training correction, the ONNX export): in place, plain ops
        return self._tile_codes(v).mul_(g).add_(offset)

    def _tile_codes(self, v: Tensor) -> Tensor:
        """Σ over tiles of clamp(floor(v)) for v = p/g + n [N, tiles, C, H, W]; v is
        overwritten."""
        q = v.floor_().clamp_(self.adc.qmin, self.adc.qmax)
        return q.sum(1) if q.shape[1] > 1 else q.squeeze(1)

    @torch.no_grad()
    def codes(self, p: Tensor) -> Tensor:
        """Σ over tiles of the ADC codes clamp(floor(p/g + n), qmin, qmax) [N, C, H, W] (float,
        no gradient): `forward(p)` is codes·g + offset (the same noise draw)."""
        if not self.calibrated:
            self.calibrate(p)
        v = p / self.gain().to(p.dtype)
        n = self.draw_noise(p)
        if n is not None:
            v = v.add_(n)
        return self._tile_codes(v)

    @torch.no_grad()
    def read(self, p: Tensor, delta: bool = False) -> Tensor:
        """`forward(p)` without gradient [N, C, H, W], or with `delta` what the read-out adds to
        the exact sum, Σ_tiles ADC(p) − Σ_tiles p; one compiled pass (`odimo.quant.fused`) for
        one tile without noise."""
        if not self.calibrated:
            self.calibrate(p)
        if p.shape[1] == 1 and self.noiseless:
            kernel = "readout_delta" if delta else "readout_value"
            gain, offset = self.gain().to(p.dtype), self.offset().to(p.dtype)
            return fused.call(kernel, p.squeeze(1), gain, offset, self.adc.qmin, self.adc.qmax)
        out = self(p)
        return out.sub_(p.sum(1) if p.shape[1] > 1 else p.squeeze(1)) if delta else out

    def fused_noise(self, like: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """The noise arguments (z, σ, g·snr) of a one-tile fused read-out kernel
        (`odimo.quant.fused.adc_input`) for partial sums shaped like `like` [N, C, H, W]: the
        standard normal draws `forward` would make (the same generator, shape and channels:
        the same codes), with σ for additive noise or g·snr for relative noise; all None when
        the read-out is noiseless."""
        if self.noiseless:
            return None, None, None
        n, _, h, w = like.shape
        z = self.standard_noise((n, 1, h, w), like).squeeze(1)
        if self.noise.snr > 0:
            return z, None, self.gain().to(like.dtype) * self.noise.snr
        return z, torch.tensor(self.noise.sigma_lsb, dtype=like.dtype, device=like.device), None

    @torch.no_grad()
    def read_affine(self, p: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
        """`read(p)`·scale + bias [N, C, H, W] (per-channel scale and bias [1, C, 1, 1]): the
        read-out in output units; for one tile one compiled pass in p's memory, the noise
        included (its draws as `forward` makes them)."""
        if not self.calibrated:
            self.calibrate(p)
        if p.shape[1] == 1:
            g = self.gain().to(p.dtype)
            out = p.squeeze(1)
            args = (1.0 / g, g, self.offset().to(p.dtype), scale, bias, self.adc.qmin)
            fused.call("readout_affine", out, *args, self.adc.qmax, *self.fused_noise(out))
            return out
        return torch.addcmul(bias, self.read(p), scale)

    def extra_repr(self) -> str:
        return (
            f"bits={self.adc.bits}, rows={self.adc.rows}, tile={self.tile}, tiles={self.tiles}, "
            f"gain={f'2^{int(self.log2_gain)}' if self.calibrated else 'uncalibrated'}"
        )


def readouts(model: nn.Module) -> list[AnalogReadout]:
    """Every analog read-out of a model, in module order (the order seeds follow)."""
    return [m for m in model.modules() if isinstance(m, AnalogReadout)]


@contextmanager
def readout_noise(model: nn.Module, noise: NoiseConfig | None) -> Iterator[None]:
    """Every read-out of `model` reads out with `noise` (None = noiseless) inside the block,
    drawing from the generators it has (`set_readout_noise`); each read-out's own noise is
    restored after."""
    saved = [(r, r.noise) for r in readouts(model)]
    for r, _ in saved:
        r.noise = noise
    try:
        yield
    finally:
        for r, old in saved:
            r.noise = old


@torch.no_grad()
def calibrate_readouts(model: nn.Module, batch: Tensor, keep_calibrated: bool = False) -> int:
    """Set every read-out's gain from one batch (eval-mode, noiseless forward, layer by layer:
    each gain sees the inputs the calibrated layers before it produce); returns how many.

    With `keep_calibrated`, gains already set (e.g. loaded from a checkpoint) are kept and only
    the others are calibrated. Training noise is off during the pass and restored after."""
    found = [r for r in readouts(model) if not (keep_calibrated and r.calibrated)]
    for r in found:
        r.reset()
    if found:
        was = model.training
        try:
            with readout_noise(model, None):
                model.eval()
                model(batch)
        finally:
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
