# SPDX-License-Identifier: Apache-2.0
"""The analog read-out: tiles, ADC codes, gain, gradients, noise, and its use in the convs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from odimo.errors import ConfigError
from odimo.hw import Diana, get_platform, with_analog
from odimo.hw.analog import AdcConfig, AnalogArithmetic, NoiseConfig, analog_from_config
from odimo.nn.conv import MappedConv2d, SearchConv2d
from odimo.quant import UintActPact, fused
from odimo.quant import adc as adc_module
from odimo.quant.adc import (
    DECISION_SPAN,
    AnalogReadout,
    calibrate_readouts,
    decision_gain_exponent,
    gain_exponent,
    readouts,
    set_readout_noise,
)


def numpy_readout(x_int: np.ndarray, t: np.ndarray, tile: int, g: int, lo: int, hi: int):
    """Independent per-tile read-out of a 3x3, padding-1 conv in int64 (loops, no torch), with
    the half-LSB offset g // 2 per tile that the digital bias add carries."""
    n, c_in, h, w = x_int.shape
    padded = np.pad(x_int, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, t.shape[0], h, w), dtype=np.int64)
    for start in range(0, c_in, tile):
        p = np.zeros_like(out)
        for dy in range(3):
            for dx in range(3):
                patch = padded[:, start : start + tile, dy : dy + h, dx : dx + w]
                p += np.einsum("nchw,oc->nohw", patch, t[:, start : start + tile, dy, dx])
        out += np.clip(np.floor_divide(p, g), lo, hi) * g + g // 2
    return out


def test_config_defaults_are_dianas_read_out() -> None:
    analog = get_platform("diana").analog
    assert analog.adc == AdcConfig(bits=6, rows=1152)
    assert (analog.adc.qmin, analog.adc.qmax) == (-32, 31)
    assert analog.noise == NoiseConfig(sigma_lsb=1.0, snr=0.0)
    assert AdcConfig().tile_channels(9, 512) == 128 and AdcConfig().tile_channels(1, 4096) == 1152
    assert analog_from_config({"adc": None}).enabled is False
    with pytest.raises(ConfigError, match="unknown key 'gain'"):
        analog_from_config({"gain": 2})
    with pytest.raises(ConfigError, match="sigma_lsb must be >= 0"):
        analog_from_config({"noise": {"sigma_lsb": -1}})


@pytest.mark.parametrize("in_channels", [40, 100])
def test_tiled_read_out_equals_an_independent_computation(in_channels: int) -> None:
    """rows 288 -> tiles of 32 input channels for 3x3 (two to four tiles, the last partial)."""
    g = torch.Generator().manual_seed(1)
    r = AnalogReadout(AdcConfig(6, 288), in_channels, (3, 3), 12)
    x_int = torch.randint(0, 128, (2, in_channels, 6, 6), generator=g)
    t = torch.randint(-1, 2, (12, in_channels, 3, 3), generator=g)
    conv = torch.nn.Conv2d(in_channels, 12, 3, padding=1)
    p = r.partial_sums(x_int.float(), t.float(), conv)
    assert p.shape == (2, math.ceil(in_channels / 32), 12, 6, 6)
    r.log2_gain.fill_(3.0)
    r.calibrated = True
    got = r(p).numpy()
    expected = numpy_readout(x_int.numpy(), t.numpy(), 32, 8, -32, 31)
    assert np.array_equal(got, expected.astype(np.float32))


def test_partial_sums_are_exact_in_float32_at_the_array_size() -> None:
    """A full 1152-row tile of 127 x (+1) products: 146 304, an exact float32 integer."""
    r = AnalogReadout(AdcConfig(6, 1152), 128, (3, 3), 2)
    x = torch.full((1, 128, 3, 3), 127.0)
    t = torch.ones(2, 128, 3, 3)
    t[1, ::2] = -1
    p = r.partial_sums(x, t, torch.nn.Conv2d(128, 2, 3, padding=0))
    assert p.flatten().tolist() == [1152 * 127, 0]


def brute_force_exponent(p: np.ndarray, sigma: float, lo: int = -32, hi: int = 31) -> int:
    """Independent argmin over e of the mean squared read-out error of (q + offset)·2^e vs p,
    the noise's expectation summed over every floor value k (math.erf, loops, no torch)."""
    errors = []
    for e in range(12):
        g, offset = 2.0**e, (2**e // 2) / 2.0**e
        err = 0.0
        for v in p / g:
            if sigma == 0:
                err += (min(max(math.floor(v), lo), hi) + offset - v) ** 2
                continue
            for k in range(math.floor(v) - 12, math.floor(v) + 13):  # ±12 σ of N(0, 1)
                cdf = [0.5 * (1 + math.erf((k + d - v) / (sigma * math.sqrt(2)))) for d in (0, 1)]
                err += (cdf[1] - cdf[0]) * (min(max(k, lo), hi) + offset - v) ** 2
        errors.append(err * g * g)
    return int(np.argmin(errors))


@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_gain_is_the_power_of_two_of_least_read_out_error(sigma: float) -> None:
    """Heavy-tailed partial sums (Laplace, scale 15): the gain equals a brute-force argmin of
    the expected error at the deployment σ, and noise pulls it narrower (more clipping, less
    amplified noise) than the noiseless optimum."""
    rng = np.random.default_rng(3)
    p = np.round(rng.laplace(0.0, 15.0, 400))
    chip = AnalogReadout(AdcConfig(), 64, (3, 3), 4, deploy_noise=NoiseConfig(sigma, 0.0))
    chip(torch.tensor(p, dtype=torch.float32).view(1, 1, 1, -1, 1))  # the first batch calibrates
    assert chip.calibrated and float(chip.log2_gain) == brute_force_exponent(p, sigma)
    assert gain_exponent(torch.tensor(p), -32, 31, NoiseConfig(1.0, 0.0)) < gain_exponent(
        torch.tensor(p), -32, 31, None
    )


def _decision_sums() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logit sums [N, C] where the two gain rules disagree: most images have moderate sums
    that a narrow gain resolves, one in ten large ones that only a wide gain reads unclipped."""
    rng = np.random.default_rng(5)
    p = rng.integers(0, 400, (256, 3)).astype(float)
    large = rng.random(256) < 0.1
    p[large] = rng.integers(3000, 6000, (int(large.sum()), 3))
    return p, np.array([3.0, -2.0, 0.0]), np.array([0.5, 0.4, 0.6])


def test_output_layer_gain_keeps_the_decision_not_the_least_error() -> None:
    """Noiseless, the output layer's exponent is the one whose read-out logits agree most often
    with the exact logits' argmax (an independent numpy count over the candidate range, ties
    to the exponent nearest the least-error one), here four powers of two narrower than the
    least-error rule's: the large sums clip, but they are one image in ten."""
    p, bias, scale = _decision_sums()
    sums = torch.tensor(p).view(256, 1, 3)
    least = gain_exponent(sums, -32, 31, None)
    exact = ((p + bias) * scale).argmax(1)
    scores = {}
    for e in range(max(0, least - DECISION_SPAN[0]), least + DECISION_SPAN[1] + 1):
        g = 2**e
        read = np.clip(np.floor(p / g), -32, 31) * g + g // 2
        scores[e] = float((((read + bias) * scale).argmax(1) == exact).mean())
    best = max(scores.values())
    want = min((e for e in scores if scores[e] == best), key=lambda e: (abs(e - least), e))
    got = decision_gain_exponent(sums, torch.tensor(bias), torch.tensor(scale), -32, 31)
    assert got == want == least - 4 and scores[got] > scores[least] + 0.05
    noisy = decision_gain_exponent(
        sums, torch.tensor(bias), torch.tensor(scale), -32, 31, NoiseConfig(1.0, 0.0)
    )
    assert noisy < gain_exponent(sums, -32, 31, NoiseConfig(1.0, 0.0))


@pytest.mark.parametrize(
    ("decides", "analog_channels", "rule"),
    [(True, 8, "decision"), (False, 8, "least"), (True, 5, "least")],
)
def test_only_an_all_analog_output_layer_takes_the_decision_rule(
    monkeypatch: pytest.MonkeyPatch, decides: bool, analog_channels: int, rule: str
) -> None:
    """The network's output layer (`decides`), every channel analog, calibrates with the
    decision rule, given its sums and the bias codes and scale that make them the layer's
    logits (equal to the layer's output with exact sums); a hidden layer, or an output layer
    with digital channels, keeps the least-error rule."""
    chip = get_platform("diana")
    assignment = torch.tensor([1] * analog_channels + [0] * (8 - analog_channels))
    act = UintActPact(4.0)
    layers = []
    for platform in (chip, with_analog(chip, None)):
        layer = MappedConv2d(64, 8, 1, platform=platform, input_quant=act)
        torch.manual_seed(0)
        torch.nn.init.normal_(layer.weight, std=0.1)
        torch.nn.init.normal_(layer.bias, std=0.1)
        layer.init_quantizers()
        layer.set_assignment(assignment)
        layer.decides = decides
        layers.append(layer.eval())
    seen = []

    def decision(sums, bias, scale, lo, hi, noise=None):
        seen.append(((sums.sum(1) + bias) * scale).view(-1, 8))
        return 20  # (no least-error gain of these sums)

    monkeypatch.setattr(adc_module, "decision_gain_exponent", decision)
    x = act(torch.rand(16, 64, 1, 1) * 4)
    with torch.no_grad():
        layers[0](x)
        exact = layers[1](x).view(16, 8)
    gain = int(layers[0].readout.log2_gain)
    if rule == "decision":
        assert gain == 20 and len(seen) == 1
        assert torch.allclose(seen[0].float(), exact, rtol=0, atol=1e-5)
    else:
        assert not seen and gain < 20


def test_gain_is_stored_and_a_small_sum_reads_out_exactly() -> None:
    r = AnalogReadout(AdcConfig(), 64, (3, 3), 4, deploy_noise=NoiseConfig())
    p = torch.arange(-32.0, 32.0).view(1, 1, 1, -1, 1)  # fits the codes: g = 1, no offset
    assert torch.equal(r(p), p.view(1, 1, -1, 1)) and float(r.log2_gain) == 0.0
    r.log2_gain.fill_(5.0)
    fresh = AnalogReadout(AdcConfig(), 64, (3, 3), 4)
    fresh.load_state_dict(r.state_dict())
    assert fresh.calibrated and float(fresh.log2_gain) == 5.0
    empty = AnalogReadout(AdcConfig(), 64, (3, 3), 4)
    empty.load_state_dict({}, strict=True)  # a checkpoint trained without the read-out
    assert not empty.calibrated


def test_straight_through_gradient_inside_the_range_zero_outside() -> None:
    r = AnalogReadout(AdcConfig(), 8, (1, 1), 1)
    r.log2_gain.fill_(1.0)
    r.calibrated = True
    p = torch.tensor([-100.0, -63.0, 0.5, 61.0, 63.0, 100.0]).view(1, 1, 1, -1, 1)
    p.requires_grad_(True)
    out = r(p)
    assert out.flatten().tolist() == [-63.0, -63.0, 1.0, 61.0, 63.0, 63.0]  # (q + 1/2)·2
    out.sum().backward()
    assert p.grad.flatten().tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_seeded_noise_is_reproducible_and_zero_sigma_is_noiseless() -> None:
    r = AnalogReadout(AdcConfig(), 8, (1, 1), 3)
    r.log2_gain.fill_(0.0)
    r.calibrated = True
    p = torch.arange(-30.0, 30.0).view(1, 1, 3, 20, 1)
    clean = r(p)
    model = torch.nn.Sequential(r)
    set_readout_noise(model, NoiseConfig(sigma_lsb=0.0), seed=1)
    assert torch.equal(r(p), clean)
    set_readout_noise(model, NoiseConfig(sigma_lsb=1.0), seed=1)
    a = r(p)
    set_readout_noise(model, NoiseConfig(sigma_lsb=1.0), seed=1)
    assert torch.equal(r(p), a) and not torch.equal(a, clean)
    assert 0.5 < float((a - clean).abs().mean()) < 1.5  # about 0.8 LSB for σ = 1
    set_readout_noise(model, NoiseConfig(sigma_lsb=0.0, snr=25.0), seed=1)
    rel = r(p) - clean
    assert float(rel[..., :3, :].abs().max()) >= 1.0  # |p| ~ 29: σ ~ 1.2 LSB
    assert NoiseConfig(1.0, 25.0).scaled(2.0) == NoiseConfig(2.0, 12.5)


@pytest.fixture
def restore_training_draws():
    saved = adc_module.training_draws()
    yield
    adc_module.set_training_draws(saved)


def test_training_draws_come_from_the_chosen_generator(restore_training_draws) -> None:
    """Unseeded (training) draws: by default the counter-based generator keyed from torch's
    global RNG (so a seeded job repeats), with `torch` exactly torch.randn's draws; seeded
    (evaluation) draws are torch's Gaussian ones whatever the training generator."""
    r = AnalogReadout(AdcConfig(), 8, (1, 1), 3)
    shape = (4, 1, 5, 6)
    like = torch.empty(4, 1, 3, 5, 6)
    torch.manual_seed(3)
    default = r.standard_noise(shape, like)
    torch.manual_seed(3)
    key = torch.randint(-(2**31), 2**31 - 1, (2,), dtype=torch.int32)
    assert torch.equal(default, fused.counter_normal(torch.empty(4, 1, 3, 5, 6), key))
    torch.manual_seed(3)
    assert torch.equal(r.standard_noise(shape, like), default)  # a seeded job repeats
    assert not torch.equal(r.standard_noise(shape, like), default)  # a fresh draw per call
    adc_module.set_training_draws("torch")
    torch.manual_seed(3)
    exact = r.standard_noise(shape, like)
    torch.manual_seed(3)
    assert torch.equal(exact, torch.randn(4, 1, 3, 5, 6))
    seeded = []
    for generator in adc_module.TRAINING_DRAWS:
        adc_module.set_training_draws(generator)
        set_readout_noise(torch.nn.Sequential(r), NoiseConfig(sigma_lsb=1.0), seed=2)
        seeded.append(r.standard_noise(shape, like))
    assert torch.equal(*seeded)
    with pytest.raises(ConfigError, match=r"^noise_generator='philox' is not one of: counter"):
        adc_module.set_training_draws("philox", "noise_generator")


def _layers(platform, assignment):
    act = UintActPact(4.0)
    layer = MappedConv2d(48, 8, 3, platform=platform, input_quant=act)
    torch.nn.init.normal_(layer.weight, std=0.1)
    torch.nn.init.normal_(layer.bias, std=0.1)
    layer.init_quantizers()
    layer.set_assignment(assignment)
    return act, layer


def test_null_adc_is_todays_arithmetic_and_a_wide_adc_equals_it() -> None:
    """adc: null builds no read-out and computes what the platform without one computes, to
    the bit; an ADC too wide to clip (gain 1) gives the same numbers through the read-out path."""
    assignment = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0])
    null = with_analog(get_platform("diana"), analog_from_config({"adc": None}))
    wide = with_analog(Diana(), AnalogArithmetic(AdcConfig(bits=24, rows=1152)))
    torch.manual_seed(0)
    act, plain = _layers(Diana(), assignment)
    x = act(torch.rand(2, 48, 7, 7) * 4)
    outs = []
    for platform in (null, wide):
        _, layer = _layers(platform, assignment)
        layer.load_state_dict(plain.state_dict(), strict=False)
        layer.input_quant = act
        layer.eval()
        outs.append(layer(x))
    assert not readouts(_layers(null, assignment)[1])
    assert float(_layers(wide, assignment)[1].readout.log2_gain) == -1.0  # until a batch
    plain.eval()
    assert torch.equal(outs[0], plain(x)) and torch.equal(outs[1], plain(x))


@pytest.mark.parametrize("rows", [288, 1152])
def test_training_forward_reads_out_like_the_deployed_layer(rows: int) -> None:
    """The training forward (mixed conv + read-out correction; with one row tile the partial
    sums read off the mixed conv's output) equals the exact eval up to the float rounding of
    the mixed conv, and differs from the ideal sums."""
    chip = with_analog(Diana(), AnalogArithmetic(AdcConfig(6, rows)))
    act, layer = _layers(chip, torch.tensor([0, 1, 1, 0, 1, 1, 1, 0]))
    x = act(torch.rand(2, 48, 7, 7) * 4)
    layer.eval()
    deployed = layer(x)
    assert int(layer.readout.log2_gain) >= 1 and layer.readout.tiles == (2 if rows == 288 else 1)
    assert layer.sums_from_output(x) == (rows == 1152)
    layer.train()
    trained = layer(x)
    assert torch.allclose(trained, deployed, rtol=0, atol=1e-5)
    if rows == 1152:  # a frozen mapping with a set gain: no conv besides the mixed one
        with pytest.MonkeyPatch.context() as m:
            m.setattr(layer.readout, "partial_sums", lambda *_: pytest.fail("second conv"))
            assert torch.equal(layer(x), trained)
    _, ideal = _layers(Diana(), layer.assignment)
    ideal.load_state_dict(layer.state_dict(), strict=False)
    ideal.input_quant = act
    assert float((ideal.eval()(x) - deployed).abs().max()) > 1e-3
    trained.sum().backward()
    assert layer.weight.grad.abs().sum() > 0


def test_search_hard_eval_and_mixture_use_the_read_out() -> None:
    chip = with_analog(Diana(), AnalogArithmetic(AdcConfig(6, 288)))
    act = UintActPact(4.0)
    search = SearchConv2d(48, 8, 3, platform=chip, input_quant=act)
    torch.nn.init.normal_(search.weight, std=0.1)
    search.init_quantizers()
    with torch.no_grad():
        search.alpha[1] += 1.0  # analog wins everywhere
    x = act(torch.rand(2, 48, 7, 7) * 4)
    calibrate_readouts(torch.nn.Sequential(search), x)
    _, mapped = _layers(chip, torch.ones(8, dtype=torch.long))
    mapped.load_state_dict(search.state_dict(), strict=False)
    mapped.input_quant = act
    search.hard = True
    search.eval()
    assert torch.equal(search(x), mapped.eval()(x))
    search.hard = False
    search.train()
    search.sampling = "soft"
    soft = search(x)
    p = search.probabilities()
    digital, _ = search.unit_weight_bias(0), None
    expected = p[0].view(1, -1, 1, 1) * search._conv_forward(x, *digital) + p[1].view(
        1, -1, 1, 1
    ) * mapped(x)
    assert torch.allclose(soft, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("rows", "sigma"), [(1152, 0.0), (288, 0.0), (1152, 1.0)])
def test_all_analog_training_forward_is_one_conv_with_the_general_gradients(
    monkeypatch: pytest.MonkeyPatch, rows: int, sigma: float
) -> None:
    """A layer entirely on the analog unit trains through ONE conv (`analog_forward`): its
    values equal the deployed layer's, and values and gradients equal the general training
    forward's (mixed conv + correction conv), with one and two row tiles and with noise."""
    chip = with_analog(Diana(), AnalogArithmetic(AdcConfig(6, rows)))
    act, layer = _layers(chip, torch.ones(8, dtype=torch.long))
    x = act(torch.rand(2, 48, 7, 7) * 4)
    layer.eval()
    deployed = layer(x)
    assert int(layer.readout.log2_gain) >= 1 and layer.readout.tiles == (1 if rows == 1152 else 2)
    layer.train()
    results = []
    for general in (False, True):
        if sigma:
            set_readout_noise(layer, NoiseConfig(sigma_lsb=sigma), seed=5)
        xi = x.detach().clone().requires_grad_(True)
        layer.zero_grad()
        with monkeypatch.context() as m:
            if not general:  # the one-conv path must not run the correction conv
                m.setattr(layer, "readout_correction", lambda *_: pytest.fail("second conv"))
            else:  # the general path: mixed conv + correction conv
                m.setattr(layer, "sums_from_output", lambda _: False)
            out = layer.readout_forward(xi) if general else layer(xi)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads = [xi.grad, layer.weight.grad, layer.bias.grad]
        grads.append(layer.weight_quants[1].log_scale.grad)
        results.append((out.detach(), grads))
    (fast, fast_grads), (slow, slow_grads) = results
    assert torch.allclose(fast, slow, rtol=0, atol=1e-5)
    if not sigma:
        assert torch.allclose(fast, deployed, rtol=0, atol=1e-5)
    else:  # the noise moves the read-out
        assert float((fast - deployed).abs().max()) > 1e-3
    for a, b in zip(fast_grads, slow_grads):
        assert a.abs().sum() > 0 and torch.allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("sigma", "analog_every"), [(0.0, 3), (1.0, 3), (0.0, 0)])
def test_hard_search_reads_analog_partial_sums_off_the_mixed_conv(
    monkeypatch: pytest.MonkeyPatch, sigma: float, analog_every: int
) -> None:
    """Hard sampling on one row tile: the analog channels' partial sums come from the mixed
    conv's output, a conv runs over the digital channels only (their α gradient sees the
    read-out too). Values, gains and the gradients of the input, the weights, the quantizers
    and α equal the correction-conv path's (which convolves every channel); an exact-sum
    layer's α gradient differs on the digital channels."""
    chip = with_analog(Diana(), AnalogArithmetic(AdcConfig(6, 1152)))
    act = UintActPact(4.0)
    torch.manual_seed(3)
    base = SearchConv2d(48, 12, 3, platform=chip, input_quant=act)
    torch.nn.init.normal_(base.weight, std=0.3)  # wide partial sums: many multiples of g
    base.init_quantizers()
    if analog_every:  # channels 0, 3, 6, 9 analog, the others digital (else all digital)
        with torch.no_grad():
            base.alpha[1, ::analog_every] += 1.0
    x = act(torch.rand(4, 48, 9, 9) * 4)
    weights = torch.linspace(-1, 1, 4 * 12 * 81).view(4, 12, 9, 9)
    convolved = []

    def run(layer, general: bool):
        layer.train()
        layer.sampling = "hard"
        if sigma:
            set_readout_noise(layer, NoiseConfig(sigma_lsb=sigma), seed=7)
        xi = x.detach().clone().requires_grad_(True)
        with monkeypatch.context() as m:
            if general:
                m.setattr(layer, "sums_from_output", lambda _: False)
            elif layer.readout is not None:
                m.setattr(layer, "readout_correction", lambda *_: pytest.fail("second conv"))
                sums = layer.readout.partial_sums
                m.setattr(
                    layer.readout,
                    "partial_sums",
                    lambda c, w, conv: convolved.append(w.shape[0]) or sums(c, w, conv),
                )
            with torch.no_grad():
                layer(x)  # the first forward sets the gain; the second reads out with it
            assert layer.readout is None or layer.readout.calibrated
            out = layer(xi)
        (out * weights).sum().backward()
        grads = [xi.grad, layer.weight.grad, layer.bias.grad, layer.alpha.grad]
        grads.append(layer.weight_quants[1].log_scale.grad)
        return out.detach(), grads

    def copy(platform):
        layer = SearchConv2d(48, 12, 3, platform=platform, input_quant=act)
        layer.load_state_dict(base.state_dict(), strict=False)
        return layer

    fast_layer, slow_layer, ideal_layer = copy(chip), copy(chip), copy(Diana())
    fast, fast_grads = run(fast_layer, general=False)
    slow, slow_grads = run(slow_layer, general=True)
    _, ideal_grads = run(ideal_layer, general=True)
    analog = [bool(analog_every) and i % analog_every == 0 for i in range(12)]
    # the digital channels, in the forward with gradient only; with none analog, also in the
    # first one, which sets the gain (from every channel, as the correction-conv path does)
    assert convolved == [12 - sum(analog)] * (1 if any(analog) else 2)
    assert int(fast_layer.readout.log2_gain) == int(slow_layer.readout.log2_gain) >= 2
    assert torch.allclose(fast, slow, rtol=0, atol=1e-5)
    for i, (a, b) in enumerate(zip(fast_grads, slow_grads)):
        moves = i < 4 or any(analog)  # no channel analog: the analog weight scale gets none
        assert bool(a.abs().sum() > 0) == moves and torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    digital = fast_layer.hard_assignment() == 0
    assert digital.tolist() == [not a for a in analog]
    # the read-out moves the digital channels' α gradient: the exact-sum one differs
    assert float((slow_grads[3][:, digital] - ideal_grads[3][:, digital]).abs().max()) > 1e-4


def test_correction_add_has_the_gradients_of_addcmul() -> None:
    """y + m·Δ with the fused per-channel reduction in backward: values and gradients equal
    those of torch.addcmul through autograd (Δ without gradient)."""
    from odimo.nn.conv import _AddCorrection

    g = torch.Generator().manual_seed(4)
    y = torch.randn(3, 5, 4, 6, generator=g)
    m = torch.randn(1, 5, 1, 1, generator=g)
    delta = torch.randn(3, 5, 4, 6, generator=g)
    upstream = torch.randn(3, 5, 4, 6, generator=g)
    results = []
    for fn in (torch.addcmul, _AddCorrection.apply):
        yi, mi = y.clone().requires_grad_(True), m.clone().requires_grad_(True)
        out = fn(yi * 1.0, mi, delta)
        (out * upstream).sum().backward()
        results.append((out.detach(), yi.grad, mi.grad))
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert float(results[1][2].abs().min()) > 1e-3


@pytest.mark.parametrize("shape", [(2, 3, 6, 5, 5), (64, 1, 12, 16, 16)])
def test_the_gain_rule_reads_its_sample_where_the_channels_copy_would(shape) -> None:
    """`channel_sample` indexes, in the whole partial sums, the elements the gain rule used to
    read from a copy of the analog channels (all of them when at most `GAIN_SAMPLE`, else the
    seeded sample): an independent numpy computation of the copy and the sample."""
    rng = np.random.default_rng(1)
    p = rng.integers(-5000, 5000, shape)
    for channels in (None, rng.random(shape[2]) < 0.4, np.zeros(shape[2], bool)):
        kept = p if channels is None or not channels.any() else p[:, :, channels]
        flat = kept.reshape(-1)
        if flat.size > adc_module.GAIN_SAMPLE:
            generator = torch.Generator().manual_seed(0)
            pick = torch.randint(flat.size, (adc_module.GAIN_SAMPLE,), generator=generator)
            flat = flat[pick.numpy()]
        mask = None if channels is None else torch.tensor(channels)
        index = adc_module.channel_sample(torch.Size(shape), mask)
        assert np.array_equal(p.reshape(-1)[index.numpy()], flat)


@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_a_read_off_layer_sets_its_gain_from_the_sample_alone(
    monkeypatch: pytest.MonkeyPatch, sigma: float
) -> None:
    """A hard search layer reading its analog sums off the mixed conv sets the gain on its
    first training batch without assembling the partial sums (the whole-tensor calibration
    must not run): the gain equals `gain_exponent` of the exact analog partial sums."""
    chip = with_analog(Diana(), AnalogArithmetic(AdcConfig(6, 1152), NoiseConfig(sigma, 0.0)))
    act = UintActPact(4.0)
    torch.manual_seed(4)
    layer = SearchConv2d(48, 12, 3, platform=chip, input_quant=act)
    torch.nn.init.normal_(layer.weight, std=0.3)
    layer.init_quantizers()
    with torch.no_grad():
        layer.alpha[1, ::3] += 1.0  # channels 0, 3, 6, 9 analog
    layer.train()
    layer.sampling = "hard"
    x = act(torch.rand(64, 48, 12, 12) * 4)  # 64·4·144 analog sums: more than the sample
    u = layer.readout_unit
    parts = layer.weight_quants[u].factored(layer.unit_float_weight(u))
    sums = layer.readout.partial_sums(x / act.step(), parts.inner, layer)
    analog = layer.hard_assignment() == u
    expected = gain_exponent(sums[:, :, analog], -32, 31, chip.analog.noise)
    monkeypatch.setattr(layer, "calibrate_readout", lambda *_: pytest.fail("whole tensor"))
    with torch.no_grad():
        layer(x)
    assert layer.readout.calibrated and int(layer.readout.log2_gain) == expected >= 2
