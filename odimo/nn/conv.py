# SPDX-License-Identifier: Apache-2.0
"""Convolutions whose output channels are split between the compute units of a platform.

- `Conv2dBN`: the float warm-up layer (conv + BatchNorm, named like the conv it becomes).
- `SearchConv2d`: one shared float weight, logits α [units, C_out]; the effective weight is the
  softmax(α/T)-weighted mix of every unit's quantized weight and the conv runs ONCE.
- `MappedConv2d`: a frozen one-hot per-channel mapping; only weights and quantizers train.

Training runs ONE conv with the mixed fake-quantized weight. In eval mode, a mapped conv (and a
search conv in hard mode) computes the deployed network instead: one exactly accumulated conv
per active unit (`exact_forward`), so validation and test measure what the exported network
computes, to the bit, whatever the batch size.

Both quantized layers expect their input already quantized by `self.input_quant` (the model
calls it, so that convs sharing an input — conv1 and a downsample — quantize it once); they read
its step only to put the bias on the integer grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odimo.hw.geometry import LayerGeometry
from odimo.hw.platform import Platform
from odimo.quant import WEIGHT_QUANTIZERS, Int16Bias, UintActPact, fused
from odimo.quant.adc import AnalogReadout
from odimo.quant.weight import Factored

#: Initial value of every α logit (equal for all units, as in the method).
ALPHA_INIT = 0.01


class Conv2dBN(nn.Conv2d):
    """Float conv followed by BatchNorm, as one module carrying the conv's name (for folding)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            kernel_size // 2,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(super().forward(x))

    @torch.no_grad()
    def folded(self) -> tuple[Tensor, Tensor]:
        """Weight and bias of the conv with the BatchNorm (running statistics) folded in."""
        bn = self.bn
        gain = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = self.weight * gain.view(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * gain
        if self.bias is not None:
            bias = bias + self.bias * gain
        return weight, bias


class QuantConv2d(nn.Conv2d):
    """Base of the quantized convs: per-unit weight quantizers, a 16-bit bias, a mix over units.

    Every unit quantizes `unit_float_weight(unit)` / `unit_float_bias(unit)`: the layer's own
    weight and bias here; a layer whose units run different operators (`odimo.nn.operator_split`)
    returns each unit's own float weight in this conv's shape.
    """

    #: True for layers whose channels choose an operator (recorded in their geometry).
    operator_choice = False
    #: True for the network's output layer (its channels are the logits; set by the layer
    #: factory's `classifier`): its read-out gain keeps the decision (`calibrate_readout`).
    decides = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        *,
        platform: Platform,
        input_quant: UintActPact,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            kernel_size // 2,
            groups=groups,
            bias=True,
        )
        self.platform = platform
        self.input_quant = input_quant
        self.weight_quants = nn.ModuleList(
            WEIGHT_QUANTIZERS[u.weight_format](out_channels) for u in platform.units
        )
        self.bias_quant = Int16Bias()
        shape = LayerGeometry(
            "",
            in_channels,
            out_channels,
            kernel_size,
            kernel_size,
            stride,
            groups,
            0,
            0,
            operator_choice=self.operator_choice,
        )
        allowed = torch.tensor(platform.allowed_units(shape))
        #: The unit of this conv when nothing else decides (the platform's fixed-layer unit).
        self.fixed_unit = platform.fixed_unit_index(shape)
        self.register_buffer("allowed", allowed.view(-1, 1), persistent=False)
        self.allowed_units = tuple(int(i) for i in torch.nonzero(allowed).flatten())
        #: The cheap unit's ADC read-out (`odimo.quant.adc`) when the platform has one on.
        self.readout: AnalogReadout | None = None
        self.readout_unit: int | None = None
        analog = platform.analog
        if analog is not None and analog.enabled:
            cheap = platform.cheap_unit_index()
            if cheap in self.allowed_units:
                self.readout_unit = cheap
                self.readout = AnalogReadout(
                    analog.adc,
                    in_channels,
                    self.kernel_size,
                    out_channels,
                    deploy_noise=analog.noise,
                )

    @torch.no_grad()
    def init_quantizers(self) -> None:
        """Initialise every unit's weight quantizer from the current float weight."""
        for u, q in enumerate(self.weight_quants):
            q.init_from(self.unit_float_weight(u))

    def unit_float_weight(self, unit: int) -> Tensor:
        """The float weight unit `unit` quantizes (this conv's shape)."""
        return self.weight

    def unit_float_bias(self, unit: int) -> Tensor:
        """The float bias unit `unit` quantizes."""
        return self.bias

    @torch.no_grad()
    def load_float(self, weight: Tensor, bias: Tensor, source: nn.Module) -> None:
        """Take the (BatchNorm-folded) weight and bias of the float layer `source`."""
        self.weight.copy_(weight)
        self.bias.copy_(bias)

    def unit_weights(self) -> Tensor:
        """Per-channel weight of each unit [U, C_out] (soft probabilities or a one-hot mask)."""
        raise NotImplementedError

    def active_units(self) -> tuple[int, ...]:
        """Units whose quantized weight must be computed."""
        return self.allowed_units

    def hard_assignment(self) -> Tensor:
        """Unit index of every output channel [C_out] (long)."""
        raise NotImplementedError

    def unit_counts(self, soft: bool) -> Tensor:
        """Channels per unit [U]: column sums of the soft weights, or whole argmax counts."""
        if soft:
            return self.unit_weights().sum(1)
        a = self.hard_assignment()
        return torch.zeros(self.platform.num_units, device=a.device).index_add_(
            0, a, torch.ones_like(a, dtype=torch.float32)
        )

    def unit_weight_bias(self, unit: int) -> tuple[Tensor, Tensor]:
        """Fake-quantized weight and bias of one unit (all channels)."""
        wq = self.weight_quants[unit]
        step = wq.step() * self.input_quant.step()
        return wq(self.unit_float_weight(unit)), self.bias_quant(self.unit_float_bias(unit), step)

    def effective_weight_bias(
        self, units: tuple[int, ...] | None = None, fixed_weight_mix: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """W_eff[c] = Σ_u p[u,c]·Q_u(W)[c] and b_eff likewise (over `units`, default all).

        Unit `fixed_weight_mix`'s p enters W_eff without gradient (its bias term keeps it): the
        rest of that unit's p gradient comes from elsewhere (`read_off_output`)."""
        units = self.active_units() if units is None else units
        if len(units) == 1 and units == self.active_units():
            return self.unit_weight_bias(units[0])
        mix = self.unit_weights()
        weight = bias = None
        for u in units:
            w_u, b_u = self.unit_weight_bias(u)
            m_u = mix[u].detach() if u == fixed_weight_mix else mix[u]
            w_u = m_u.view(-1, 1, 1, 1) * w_u
            b_u = mix[u] * b_u
            weight = w_u if weight is None else weight + w_u
            bias = b_u if bias is None else bias + b_u
        return weight, bias

    def exact_eval(self) -> bool:
        """Whether the eval-mode forward is the deployed, exactly accumulated network."""
        return False

    def accumulation_dtype(self, unit: int) -> torch.dtype:
        """float32 if every partial sum of `unit`'s conv is an integer below 2^24 (exact in
        float32), else float64 (exact below 2^53).

        A static bound, no host sync: fan-in x max input code x max weight code + bias codes.
        ResNet20 (fan-in <= 576) stays in float32; ResNet18's 3x3x512 convs (4608) need float64.
        """
        fan_in = self.weight[0].numel()
        weight_levels = getattr(self.weight_quants[unit], "levels", 1)
        bound = fan_in * self.input_quant.levels * weight_levels + 2**15
        return torch.float32 if bound < 2**24 else torch.float64

    def unit_output(self, x: Tensor, unit: int) -> Tensor:
        """One unit's output for ALL channels, accumulated exactly (see `Factored`).

        The conv runs with integer codes times a power of two over the input grid, and the
        unit's remaining scale is applied once afterwards: the exact value of
        conv(x, Q_u(W)) + b_u rounded once, independent of the batch size, the summation order
        and the runtime (the exported `SplitConv2d` computes the same numbers to the bit).
        It accumulates in `accumulation_dtype(unit)` with autocast off (under `bf16-mixed` the
        conv would otherwise run in bfloat16), and returns float32 (float64 for float64 input).
        """
        wq = self.weight_quants[unit]
        act_step = self.input_quant.step()
        parts = wq.factored(self.unit_float_weight(unit))
        codes = self.bias_quant.codes(self.unit_float_bias(unit), wq.step() * act_step)
        wide = x.dtype == torch.float64  # a float64 network stays float64 throughout
        acc = torch.float64 if wide else self.accumulation_dtype(unit)
        out_dtype = torch.float64 if wide else torch.float32
        if unit == self.readout_unit:
            return self.readout_output(x, parts, codes, act_step, out_dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            bias = (codes * (act_step * parts.inner_mult)).to(acc)
            y = self._conv_forward(x.to(acc), parts.inner.to(acc), bias)
            if parts.out_scale is not None:
                y = y * parts.out_scale.to(acc).view(1, -1, 1, 1)
            if parts.out_div is not None:
                y = y / parts.out_div
        return y.to(out_dtype)

    def readout_output(
        self, x: Tensor, parts: Factored, codes: Tensor, act_step: Tensor, dtype: torch.dtype
    ) -> Tensor:
        """The analog unit's output through the ADC: (Σ_tiles q·g + b)·act_step·s_c.

        The partial sums are conv(x / act_step, t): 7-bit codes times ternary codes, integers
        exact in float32 per tile (see `odimo.quant.adc`); the bias codes join after the
        read-out, as on the chip, and the per-channel scale is applied once, as in the exact
        path (with the read-out off the two compute the same expression).
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            inputs = x.to(dtype) / act_step.to(dtype)
            p = self.readout.partial_sums(inputs, parts.inner.to(dtype), self)
            self.calibrate_readout(p)
            total = self.readout(p) + codes.to(dtype).view(1, -1, 1, 1)
            y = total * act_step.to(dtype)
            if parts.out_scale is not None:
                y = y * parts.out_scale.to(dtype).view(1, -1, 1, 1)
            if parts.out_div is not None:
                y = y / parts.out_div
        return y

    def calibrate_readout(self, p: Tensor) -> None:
        """Set the read-out's gain from partial sums p [N, tiles, C, H, W] if it has none yet:
        from the channels the (hard) mapping reads out on the analog unit (all when none). The
        network's output layer (`decides`), entirely on the analog unit, gets the gain that
        keeps its decision (`odimo.quant.adc.decision_gain_exponent`)."""
        if self.readout.calibrated:
            return
        analog = self.hard_assignment() == self.readout_unit
        decision = self.decision_terms() if self.decision_rule(p.shape, analog) else None
        self.readout.calibrate(p, analog, decision)

    def decision_rule(self, shape: torch.Size, analog: Tensor) -> bool:
        """Whether the gain of partial sums of `shape` [N, tiles, C, H, W] follows the output
        layer's rule (`calibrate_readout`): the network's output layer, one value per
        channel, every channel on the analog unit (`analog`, bool [C], the hard mapping's)."""
        return self.decides and math.prod(shape[3:]) == 1 and bool(analog.all())

    @torch.no_grad()
    def decision_terms(self) -> tuple[Tensor, Tensor]:
        """The analog unit's bias codes [C] (partial-sum units) and per-channel scale: its
        logits are (read-out + codes)·scale."""
        u = self.readout_unit
        wq = self.weight_quants[u]
        act_step = self.input_quant.step()
        parts = wq.factored(self.unit_float_weight(u))
        codes = self.bias_quant.codes(self.unit_float_bias(u), wq.step() * act_step)
        return codes.flatten(), self._readout_scale(parts, act_step).flatten()

    def readout_forward(self, x: Tensor) -> Tensor:
        """Training forward with the ADC: the one mixed conv of the idealised forward, with the
        analog unit's share read out through the ADC.

        Forward: every channel computes Σ_u w_u·y_u with the analog y_u read out through the
        ADC (tiles, gain, clamp, noise), i.e. what the deployed network computes (up to float
        rounding of the mixed conv). Backward: the gradient passes straight through the floor
        and the clamp, and the analog unit weight's gradient sees the read-out value:
        ∂/∂w_a = ⟨g, y_a + Δ⟩ with Δ = ADC(p) − p in output units.

        A one-hot forward on one row tile reads the analog partial sums off the mixed conv's
        output (`read_off_output`: no second conv for those channels); otherwise the read-out's
        correction Δ comes from a second conv over every channel (forward only, no grad;
        `readout_correction`). A layer entirely on the analog unit needs neither
        (`analog_forward`).
        """
        mix = self.unit_weights()[self.readout_unit].view(1, -1, 1, 1)
        if self.sums_from_output(x):
            fixed = self.readout_unit if mix.requires_grad else None
            weight, bias = self.effective_weight_bias(fixed_weight_mix=fixed)
            return self.read_off_output(x, self._conv_forward(x, weight, bias), bias, mix)
        weight, bias = self.effective_weight_bias()
        y = self._conv_forward(x, weight, bias)
        delta, scale = self.readout_correction(x)
        return _AddCorrection.apply(y, mix * scale, delta.to(y.dtype))

    def one_hot_forward(self) -> bool:
        """Whether the training forward puts every channel on exactly one unit (unit weights
        one-hot in value: a frozen mapping, or straight-through hard sampling)."""
        return False

    def sums_from_output(self, x: Tensor) -> bool:
        """Whether `readout_forward` can read the analog channels' partial sums off the mixed
        conv's output (`read_off_output`) instead of a second conv: a one-hot
        forward, one row tile, and a conv that accumulates in float32 or wider (not under
        autocast, not in TF32 on a GPU)."""
        if self.readout.tiles != 1 or not self.one_hot_forward():
            return False
        wide = x.dtype in (torch.float32, torch.float64)
        if not wide or torch.is_autocast_enabled(x.device.type):
            return False
        return not (x.is_cuda and torch.backends.cudnn.allow_tf32)

    @torch.no_grad()
    def readout_correction(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(Σ_tiles ADC(p) − p [N, C, H, W] for every output channel, the per-channel factor
        [1, C, 1, 1] taking it to output units, act_step·s_c), without gradient."""
        wq = self.weight_quants[self.readout_unit]
        act_step = self.input_quant.step()
        parts = wq.factored(self.unit_float_weight(self.readout_unit))
        with torch.autocast(device_type=x.device.type, enabled=False):
            inner = parts.inner.float() / act_step  # t·2^k: conv(x, t·2^k) = p, exact
            p = self.readout.partial_sums(x.float(), inner, self)
            self.calibrate_readout(p)
            return self.readout.read(p, delta=True), self._readout_scale(parts, act_step)

    def read_off_output(self, x: Tensor, y: Tensor, bias: Tensor, mix: Tensor) -> Tensor:
        """The analog read-out on a one-hot forward over one row tile, from the mixed conv's
        output y = conv(x, W_eff) + b_eff, in place; `mix` [1, C, 1, 1] is the analog unit's
        weight (one-hot in value), `bias` b_eff.

        On a channel the forward computes on the analog unit, y = p·scale + b with p the
        integer partial sum and scale = act_step·s_c, so p = round((y − b)/scale): the float32
        conv's rounding error grows with |p| and is far below the ½ the rounding forgives (at
        most 0.0015 for |p| up to 4 051 on a trained Fashion-MNIST ResNet20; tested against
        the exact sums). Those channels become (ADC(p) + b/scale)·scale; the others keep y.

        When the unit weights take a gradient (a search), the analog one's is the inner product
        of the output gradient with the read-out value on EVERY channel, ⟨g, y_a + Δ⟩: the bias
        term comes through b_eff, the rest from the ADC codes q, ⟨g, (q·gain + offset)·scale⟩
        (`_ReadOff`; W_eff takes that weight without gradient, `effective_weight_bias`). The
        channels the forward puts on another unit get their codes from a conv over those
        channels alone; a frozen mapping needs no codes. The read-out is one fused pass over y
        (`odimo.quant.fused.readout_add_from_output`), the noise's draws included; on the batch
        that sets the gain, the gain rule reads the partial sums at its sample alone
        (`_ReadOffRead.sums_at`), never all of them.
        """
        u = self.readout_unit
        act_step = self.input_quant.step()
        with torch.no_grad():
            parts = self.weight_quants[u].factored(self.unit_float_weight(u))
            scale = self._readout_scale(parts, act_step).to(y.dtype)
        analog = mix.detach() > 0.5
        others = None  # (a gain set from no channel at all would be meaningless)
        if mix.requires_grad or not (self.readout.calibrated or bool(analog.any())):
            others = torch.nonzero(~analog.view(-1)).flatten()
        read = _ReadOffRead(self, x, parts, act_step, scale, analog, bias.detach(), others)
        return _ReadOff.apply(y, mix, read)

    @staticmethod
    def _readout_scale(parts: Factored, act_step: Tensor) -> Tensor:
        """act_step · the analog unit's remaining factors, per channel [1, C, 1, 1]."""
        scale = act_step * parts.inner_mult
        if parts.out_scale is not None:
            scale = scale * parts.out_scale.float().view(1, -1, 1, 1)
        if parts.out_div is not None:
            scale = scale / parts.out_div
        return scale.view(1, -1, 1, 1) if scale.dim() else scale.view(1, 1, 1, 1)

    def analog_forward(self, x: Tensor) -> Tensor:
        """Training forward of a layer entirely on the analog unit: ONE conv (`_ReadThrough`).

        The value is the chip's, (Σ_tiles ADC(p) + b)·step·s_c from p = conv(x, t·2^k) (exact);
        the gradient is that of the idealised conv(x, W) + b, i.e. straight through the
        read-out, as `readout_forward` gives it with the unit's weight one, without its
        correction conv. Under autocast the general path runs (it keeps the mixed precision).
        """
        if torch.is_autocast_enabled(x.device.type):
            return self.readout_forward(x)
        u = self.readout_unit
        weight, bias = self.unit_weight_bias(u)
        with torch.no_grad():
            parts = self.weight_quants[u].factored(self.unit_float_weight(u))
            act_step = self.input_quant.step()
            inner = parts.inner.to(x.dtype) / act_step  # t·2^k: conv(x, t·2^k) = p, exact
            scale = self._readout_scale(parts, act_step).to(x.dtype)
        return _ReadThrough.apply(x, weight, bias, self, inner, scale)

    def exact_forward(self, x: Tensor) -> Tensor:
        """The one-hot network as deployed: each active unit exactly, channels picked by mask."""
        units = self.active_units()
        if len(units) == 1:
            return self.unit_output(x, units[0])
        mask = self.unit_weights()
        out = None
        for u in units:
            y = self.unit_output(x, u) * mask[u].view(1, -1, 1, 1)
            out = y if out is None else out + y
        return out

    def forward(self, x: Tensor) -> Tensor:
        if not self.training and self.exact_eval():
            return self.exact_forward(x)
        if self.readout is not None and self.readout_unit in self.active_units():
            if self.active_units() == (self.readout_unit,):
                return self.analog_forward(x)
            return self.readout_forward(x)
        weight, bias = self.effective_weight_bias()
        return self._conv_forward(x, weight, bias)


class _AddCorrection(torch.autograd.Function):
    """y + m·Δ in place (m per channel [1, C, 1, 1], Δ without gradient): the gradient passes
    to y unchanged and to m as Σ_{n,h,w} grad·Δ, one fused reduction (`fused.channel_dot`)
    instead of a product tensor and its sum."""

    @staticmethod
    def forward(ctx, y, m, delta):
        ctx.mark_dirty(y)
        ctx.save_for_backward(delta)
        ctx.channel_shape = m.shape
        return y.addcmul_(m, delta)  # (the conv's backward needs not y)

    @staticmethod
    def backward(ctx, grad):
        grad_m = None
        if ctx.needs_input_grad[1]:
            (delta,) = ctx.saved_tensors
            grad_m = fused.call("channel_dot", grad, delta).view(ctx.channel_shape)
        return grad, grad_m, None


class _ReadOffRead:
    """What `_ReadOff` does to the mixed conv's output y (without gradient), for
    `QuantConv2d.read_off_output`: reads the analog channels out in place and returns the
    ADC codes of every channel (int8 [N, C, H, W]; None without `others`) and the factors that
    take codes to output units, gain·scale and offset·scale [1, C, 1, 1]."""

    def __init__(self, layer, x, parts, act_step, scale, analog, bias, others):
        self.layer, self.x, self.parts, self.act_step = layer, x, parts, act_step
        self.scale, self.analog, self.bias, self.others = scale, analog, bias, others

    def others_sums(self, dtype: torch.dtype) -> Tensor | None:
        """The analog partial sums [N, 1, k, H, W] of the channels on another unit."""
        if self.others is None or not self.others.numel():
            return None
        layer = self.layer
        inner = self.parts.inner.index_select(0, self.others).to(dtype) / self.act_step
        return layer.readout.partial_sums(self.x.detach().to(dtype), inner, layer)

    def sums_at(self, y: Tensor, bias: Tensor, sums: Tensor | None, index: Tensor) -> Tensor:
        """The partial sums [N, 1, C, H, W] the read-out reads, at flat indices `index`, without
        assembling them: round((y − b)/scale) on the analog channels, the other channels' own
        sums where they have them, 0 elsewhere (y in any memory format)."""
        n_, c_, h_, w_ = y.shape
        index = index.to(y.device)
        plane = index % (h_ * w_)
        n, c = index // (c_ * h_ * w_), (index // (h_ * w_)) % c_
        h, w = plane // w_, plane % w_
        flat = lambda t: t.reshape(-1)[c]  # noqa: E731 - per-channel [1, C, 1, 1] at each index
        p = (y[n, c, h, w] - flat(bias)).div_(flat(self.scale)).round_().mul_(flat(self.analog))
        if sums is not None:
            slot = torch.full((c_,), -1, dtype=torch.long, device=y.device)
            slot[self.others] = torch.arange(self.others.numel(), device=y.device)
            own = slot[c] >= 0
            p[own] = sums[n[own], 0, slot[c][own], h[own], w[own]]
        return p

    def __call__(self, y: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        readout, scale, analog, layer = self.layer.readout, self.scale, self.analog, self.layer
        bias = self.bias.to(y.dtype).view(1, -1, 1, 1)
        sums = self.others_sums(y.dtype)
        if not readout.calibrated:  # the batch that sets the gain
            shape = (y.shape[0], 1, *y.shape[1:])
            analog_units = layer.hard_assignment() == layer.readout_unit
            if layer.decision_rule(shape, analog_units):  # the output layer: a logit a channel
                p = (y - bias).div_(scale).round_().mul_(analog)
                if sums is not None:
                    p.index_copy_(1, self.others, sums.squeeze(1))
                layer.calibrate_readout(p.unsqueeze(1))
            else:  # the gain rule reads a sample: the sums at it alone
                take = lambda i: self.sums_at(y, bias, sums, i)  # noqa: E731
                readout.calibrate_from(shape, take, analog_units)
        gain, offset = readout.gain().to(y.dtype), readout.offset().to(y.dtype)
        factors = (gain * scale, offset * scale)
        lo, hi = readout.adc.qmin, readout.adc.qmax
        # the read-out's noise, drawn for every channel (as `AnalogReadout.forward` does):
        # the analog channels' share reads y, the others' their own sums
        z, sigma, gsnr = readout.fused_noise(y)
        # one fused pass on y; the other channels' codes from their own sums
        others = None
        if sums is not None:
            z_others = None if z is None else z.index_select(1, self.others)
            noise = (z_others, sigma, gsnr)
            others = fused.call("readout_codes", sums.squeeze(1), 1.0 / gain, lo, hi, *noise)
            if others.shape[1] == y.shape[1]:  # no channel analog: y stays
                return others, *factors
        args = (bias, 1.0 / scale, scale, analog, 1.0 / gain, gain, offset, lo, hi)
        codes = fused.call(
            "readout_add_from_output", y, *args, self.others is not None, z, sigma, gsnr
        )
        if others is not None:
            codes.index_copy_(1, self.others, others)
        return codes, *factors


class _ReadOff(torch.autograd.Function):
    """The mixed conv's output y read out in place by `read` (a `_ReadOffRead`); the gradient
    passes to y unchanged and to the analog unit's weight m [1, C, 1, 1] as
    Σ_{n,h,w} grad·(q·gain + offset)·scale from the saved int8 codes q, one fused reduction
    (`fused.code_dot`): a quarter of the memory of a saved float correction."""

    @staticmethod
    def forward(ctx, y, m, read):
        codes, slope, intercept = read(y)
        ctx.mark_dirty(y)
        ctx.channel_shape = m.shape
        if codes is not None:
            ctx.save_for_backward(codes, slope, intercept)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad_m = None
        if ctx.needs_input_grad[1]:
            codes, slope, intercept = ctx.saved_tensors
            grad_m = fused.call("code_dot", grad, codes, slope, intercept).view(ctx.channel_shape)
        return grad, grad_m, None


class _ReadThrough(torch.autograd.Function):
    """y = (Σ_tiles ADC(p) + b/scale)·scale, p = conv(x, inner) exactly, with the gradient of
    conv(x, weight) + b (straight through the read-out; weight = inner·scale up to rounding).

    Backward is one `convolution_backward` with the real weight, exactly what the idealised
    conv's backward computes; no elementwise pass for the per-channel scale.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, layer, inner, scale):
        with torch.no_grad():
            p = layer.readout.partial_sums(x, inner, layer)
            layer.calibrate_readout(p)
            y = layer.readout.read_affine(p, scale, bias.detach().view(1, -1, 1, 1))
        ctx.save_for_backward(x, weight)
        ctx.geometry = (layer.stride, layer.padding, layer.dilation, layer.groups)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.geometry
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[0]], stride, padding, dilation, False, [0, 0],
            groups, [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]],
        )  # fmt: skip
        return grad_x, grad_w, grad_b, None, None, None


#: How a search conv turns α into per-channel unit weights while training (see `SearchConv2d`).
SAMPLING = ("soft", "hard", "gumbel", "gumbel_hard")


class SearchConv2d(QuantConv2d):
    """A conv whose per-channel unit is searched: softmax(α/T) over units, per output channel.

    Units that cannot run this conv (e.g. analog for grouped convs) get probability 0.
    The temperature is a persistent buffer, so checkpoints carry it.

    `sampling` chooses what the training forward uses (evaluation never samples):

    - ``soft``: the softmax mixture of the units' weights (the method as published);
    - ``hard``: straight-through: the forward uses the one-hot argmax (the network that is
      deployed) and the gradient flows through the softmax;
    - ``gumbel``: softmax((α + g)/T) with Gumbel noise g drawn every step;
    - ``gumbel_hard``: the one-hot argmax of α + g forward, the Gumbel softmax backward.

    The cost model sees the noise-free weights (`cost_weights`): the softmax for ``soft`` and
    ``gumbel``, the straight-through argmax for ``hard`` and ``gumbel_hard``, so with hard
    sampling the cost term's value is the deployed mapping's cost.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = nn.Parameter(
            torch.full((self.platform.num_units, self.out_channels), ALPHA_INIT)
        )
        self.register_buffer("temperature", torch.tensor(1.0))
        self.hard = False
        self.sampling = "soft"

    def masked_logits(self) -> Tensor:
        """α with the units that cannot run this conv set to -inf."""
        return self.alpha.masked_fill(~self.allowed, float("-inf"))

    def probabilities(self) -> Tensor:
        """softmax(α/T) over units [U, C_out], without noise."""
        return torch.softmax(self.masked_logits() / self.temperature, dim=0)

    def _one_hot(self) -> Tensor:
        return F.one_hot(self.hard_assignment(), self.platform.num_units).T.to(self.alpha.dtype)

    def unit_weights(self) -> Tensor:
        if self.hard:
            return self._one_hot()
        if not self.training:
            return self.probabilities()
        if self.sampling in ("soft", "hard"):
            return self.cost_weights()
        gumbel = -torch.log(-torch.log(torch.rand_like(self.alpha).clamp_(1e-10, 1.0 - 1e-7)))
        soft = torch.softmax((self.masked_logits() + gumbel) / self.temperature, dim=0)
        if self.sampling == "gumbel":
            return soft
        index = soft.detach().argmax(0)
        one_hot = F.one_hot(index, self.platform.num_units).T.to(soft.dtype)
        return (soft - soft.detach()) + one_hot

    def cost_weights(self) -> Tensor:
        """Noise-free unit weights for the cost model (see the class docstring)."""
        if self.hard:
            return self._one_hot()
        soft = self.probabilities()
        if self.sampling in ("hard", "gumbel_hard"):
            return (soft - soft.detach()) + self._one_hot()
        return soft

    def unit_counts(self, soft: bool) -> Tensor:
        if soft:
            return self.cost_weights().sum(1)
        return super().unit_counts(soft=False)

    def exact_eval(self) -> bool:
        return self.hard

    def one_hot_forward(self) -> bool:
        return self.hard or (self.training and self.sampling == "hard")

    def hard_assignment(self) -> Tensor:
        """argmax over units of α; ties go to the platform's precise unit (if it may run this
        conv), then to the lower index."""
        logits = self.alpha.detach().masked_fill(~self.allowed, float("-inf"))
        best = logits.argmax(0)
        precise = self.platform.precise_unit_index()
        if precise not in self.allowed_units:
            return best
        tie = logits[precise] >= logits.max(0).values
        return torch.where(tie, torch.full_like(best, precise), best)


class MappedConv2d(QuantConv2d):
    """A conv with a frozen per-channel mapping (`assignment` [C_out], unit indices).

    Only the units that hold channels are computed; with one unit the mix is skipped entirely.
    """

    def __init__(self, *args, assignment: Tensor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if assignment is None:
            assignment = torch.full((self.out_channels,), self.fixed_unit, dtype=torch.long)
        self.register_buffer("assignment", torch.zeros(self.out_channels, dtype=torch.long))
        self.register_buffer(
            "mask", torch.zeros(self.platform.num_units, self.out_channels), persistent=False
        )
        self.set_assignment(assignment)

    @torch.no_grad()
    def set_assignment(self, assignment: Tensor) -> None:
        """Freeze a new mapping; checks shape and that each unit may run this conv."""
        assignment = torch.as_tensor(assignment, dtype=torch.long).to(self.assignment.device)
        if assignment.shape != (self.out_channels,):
            raise ValueError(
                f"assignment must have shape ({self.out_channels},), got {tuple(assignment.shape)}"
            )
        used = sorted(set(assignment.tolist()))
        bad = [u for u in used if u not in self.allowed_units]
        if bad:
            names = [
                self.platform.unit_names[u] if 0 <= u < self.platform.num_units else str(u)
                for u in bad
            ]
            raise ValueError(f"units {names} cannot run this conv (groups={self.groups})")
        self.assignment.copy_(assignment)
        self.mask.copy_(F.one_hot(assignment, self.platform.num_units).T.to(self.mask.dtype))
        self._active = tuple(used) if used else (0,)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.set_assignment(self.assignment.clone())

    def active_units(self) -> tuple[int, ...]:
        return self._active

    def exact_eval(self) -> bool:
        return True

    def one_hot_forward(self) -> bool:
        return True

    def unit_weights(self) -> Tensor:
        return self.mask

    def hard_assignment(self) -> Tensor:
        return self.assignment


def search_layers(model: nn.Module) -> list[SearchConv2d]:
    """All search convs of a model."""
    return [m for m in model.modules() if isinstance(m, SearchConv2d)]


@torch.no_grad()
def set_temperature(model: nn.Module, temperature: float) -> None:
    """Set the softmax temperature of every search conv (one shared value)."""
    for layer in search_layers(model):
        layer.temperature.fill_(temperature)


def set_sampling(model: nn.Module, sampling: str) -> None:
    """Set how every search conv samples its units while training (one of `SAMPLING`)."""
    if sampling not in SAMPLING:
        raise ValueError(f"unknown sampling {sampling!r} (choose from: {', '.join(SAMPLING)})")
    for layer in search_layers(model):
        layer.sampling = sampling


def polarization(model: nn.Module) -> Tensor:
    """Mean over searched channels of how far the softmax is from one-hot, in [0, 1].

    Per channel 1 − Σ_u p_u², scaled by U/(U−1) over the units allowed: 1 for a uniform
    split, 0 for a one-hot one (a Gini-style polarisation term).
    """
    total, count = None, 0
    for layer in search_layers(model):
        p = layer.probabilities()
        units = len(layer.allowed_units)
        if units < 2:
            continue
        term = ((1.0 - (p * p).sum(0)) * (units / (units - 1))).sum()
        total = term if total is None else total + term
        count += layer.out_channels
    if total is None:
        return torch.zeros(())
    return total / count


@contextmanager
def hard_mapping(model: nn.Module) -> Iterator[nn.Module]:
    """Run a search model as the network that will be deployed: one-hot argmax per channel."""
    layers = search_layers(model)
    previous = [layer.hard for layer in layers]
    for layer in layers:
        layer.hard = True
    try:
        yield model
    finally:
        for layer, was in zip(layers, previous):
            layer.hard = was
