# SPDX-License-Identifier: Apache-2.0
"""Search and mapped convolutions: the effective weight, one conv per forward, the mapping state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from odimo.nn import (
    ALPHA_INIT,
    Conv2dBN,
    MappedConv2d,
    SearchConv2d,
    hard_mapping,
    search_layers,
    set_temperature,
)
from odimo.quant import UintActPact

DIGITAL, ANALOG = 0, 1


def make_search(diana, c_in=4, c_out=6, k=3, stride=1, groups=1, clip=2.0) -> SearchConv2d:
    layer = SearchConv2d(
        c_in, c_out, k, stride, groups, platform=diana, input_quant=UintActPact(clip)
    )
    with torch.no_grad():
        layer.bias.normal_(0, 0.3)
    layer.init_quantizers()
    return layer


def make_mapped(diana, c_in=4, c_out=6, k=3, stride=1, groups=1, assignment=None):
    layer = MappedConv2d(
        c_in,
        c_out,
        k,
        stride,
        groups,
        platform=diana,
        input_quant=UintActPact(2.0),
        assignment=assignment,
    )
    with torch.no_grad():
        layer.bias.normal_(0, 0.3)
    layer.init_quantizers()
    return layer


def quantized_input(layer, shape=(2, 4, 7, 7)):
    return layer.input_quant(torch.rand(shape) * 3)


def manual_unit_weight_bias(layer, unit):
    """Q8 / ternary weights and the 16-bit bias, written out from the method's formulas."""
    w, b = layer.weight.detach(), layer.bias.detach()
    act_step = 1.0 / float(layer.input_quant.scale())
    if unit == DIGITAL:
        peak = float(w.abs().max())
        s = 2.0 ** torch.floor(torch.log2(torch.tensor(2 * peak)))
        wq = s * torch.round(127 * torch.clamp(w / s, -1, 1)) / 127
        w_step = (s / 127).expand(layer.out_channels)
    else:
        s = torch.exp(layer.weight_quants[ANALOG].log_scale.detach()).view(-1, 1, 1, 1)
        wq = s * torch.round(torch.clamp(w / s, -1, 1))
        w_step = s.flatten()
    step = w_step * act_step
    bq = step * torch.round(torch.clamp(b / step, -(2**15), 2**15 - 1))
    return wq, bq


# -- SearchConv2d ---------------------------------------------------------------------------------


def test_search_alpha_shape_and_equal_init(diana):
    layer = make_search(diana, c_out=6)
    assert layer.alpha.shape == (2, 6)
    assert torch.all(layer.alpha == ALPHA_INIT) and ALPHA_INIT == 0.01
    assert torch.allclose(layer.unit_weights(), torch.full((2, 6), 0.5))


def test_search_effective_weight_is_the_softmax_mix(diana):
    layer = make_search(diana)
    with torch.no_grad():
        layer.alpha.normal_()
        layer.temperature.fill_(0.7)
    s = torch.softmax(layer.alpha.detach() / 0.7, dim=0)
    w_d, b_d = manual_unit_weight_bias(layer, DIGITAL)
    w_a, b_a = manual_unit_weight_bias(layer, ANALOG)
    weight, bias = layer.effective_weight_bias()
    assert torch.allclose(
        weight, s[0].view(-1, 1, 1, 1) * w_d + s[1].view(-1, 1, 1, 1) * w_a, atol=1e-6
    )
    assert torch.allclose(bias, s[0] * b_d + s[1] * b_a, atol=1e-6)


def test_search_runs_one_conv_with_the_effective_weight(diana, monkeypatch):
    layer = make_search(diana, stride=2)
    with torch.no_grad():
        layer.alpha.normal_()
    x = quantized_input(layer)
    weight, bias = layer.effective_weight_bias()
    expected = F.conv2d(x, weight, bias, stride=2, padding=1)
    calls = []
    conv2d = F.conv2d

    def counting(*args, **kwargs):
        calls.append(1)
        return conv2d(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", counting)
    y = layer(x)
    assert len(calls) == 1
    assert torch.allclose(y, expected, atol=1e-6)


def test_search_gradients_reach_alpha_weight_and_quantizers(diana):
    layer = make_search(diana)
    layer(quantized_input(layer)).square().sum().backward()
    assert layer.alpha.grad is not None and layer.alpha.grad.abs().sum() > 0
    assert layer.weight.grad.abs().sum() > 0
    assert layer.weight_quants[ANALOG].log_scale.grad.abs().sum() > 0
    assert layer.weight_quants[DIGITAL].log2_range.grad is not None


def test_temperature_is_a_persistent_buffer(diana):
    layer = make_search(diana)
    set_temperature(layer, 0.25)
    state = layer.state_dict()
    assert "temperature" in state and float(state["temperature"]) == 0.25
    fresh = make_search(diana)
    fresh.load_state_dict(state)
    assert float(fresh.temperature) == 0.25
    assert "allowed" not in state  # derived from the platform, not saved


def test_argmax_ties_go_to_digital(diana):
    layer = make_search(diana, c_out=4)
    with torch.no_grad():
        layer.alpha.copy_(torch.tensor([[0.3, 0.3, 0.1, 0.5], [0.3, 0.2, 0.2, 0.9]]))
    assert layer.hard_assignment().tolist() == [DIGITAL, DIGITAL, ANALOG, ANALOG]
    assert layer.unit_counts(soft=False).tolist() == [2.0, 2.0]
    soft = layer.unit_counts(soft=True)
    assert soft.sum().item() == pytest.approx(4.0)


def test_hard_mapping_context_uses_one_hot_argmax(diana):
    model = nn.Sequential(make_search(diana))
    layer = model[0]
    with torch.no_grad():
        layer.alpha.normal_()
    x = quantized_input(layer)
    one_hot = F.one_hot(layer.hard_assignment(), 2).T.float()
    with hard_mapping(model):
        assert layer.hard
        assert torch.equal(layer.unit_weights(), one_hot)
        y_hard = layer(x)
    assert not layer.hard
    mapped = make_mapped(diana, assignment=layer.hard_assignment())
    mapped.load_state_dict(
        {k: v for k, v in layer.state_dict().items() if k not in ("alpha", "temperature")},
        strict=False,
    )
    mapped.set_assignment(layer.hard_assignment())
    assert torch.allclose(y_hard, mapped(x), atol=1e-6)
    assert search_layers(model) == [layer]


def test_search_depthwise_never_uses_analog(diana):
    layer = make_search(diana, c_in=6, c_out=6, groups=6)
    with torch.no_grad():
        layer.alpha[ANALOG].fill_(5.0)  # analog logits larger: still masked out
    p = layer.unit_weights()
    assert torch.equal(p[ANALOG], torch.zeros(6)) and torch.equal(p[DIGITAL], torch.ones(6))
    assert layer.hard_assignment().tolist() == [DIGITAL] * 6
    assert layer.unit_counts(soft=True).tolist() == [6.0, 0.0]
    x = quantized_input(layer, (1, 6, 5, 5))
    w_d, b_d = manual_unit_weight_bias(layer, DIGITAL)
    assert torch.allclose(layer(x), F.conv2d(x, w_d, b_d, padding=1, groups=6), atol=1e-5)


# -- MappedConv2d ---------------------------------------------------------------------------------


def test_mapped_all_digital_equals_int8_conv(diana):
    layer = make_mapped(diana)
    assert layer.assignment.tolist() == [DIGITAL] * 6 and layer.active_units() == (DIGITAL,)
    x = quantized_input(layer)
    w_d, b_d = manual_unit_weight_bias(layer, DIGITAL)
    assert torch.allclose(layer(x), F.conv2d(x, w_d, b_d, padding=1), atol=1e-5)


def test_mapped_mixed_assignment_selects_per_channel(diana):
    assignment = torch.tensor([0, 1, 1, 0, 1, 0])
    layer = make_mapped(diana, assignment=assignment)
    assert layer.active_units() == (DIGITAL, ANALOG)
    x = quantized_input(layer)
    y = layer(x)
    w_d, b_d = manual_unit_weight_bias(layer, DIGITAL)
    w_a, b_a = manual_unit_weight_bias(layer, ANALOG)
    y_d = F.conv2d(x, w_d, b_d, padding=1)
    y_a = F.conv2d(x, w_a, b_a, padding=1)
    expected = torch.where((assignment == 1).view(1, -1, 1, 1), y_a, y_d)
    assert torch.allclose(y, expected, atol=1e-5)
    assert layer.unit_counts(soft=False).tolist() == [3.0, 3.0]
    assert layer.unit_counts(soft=True).tolist() == [3.0, 3.0]


def test_mapped_all_analog_equals_ternary_conv(diana):
    layer = make_mapped(diana, assignment=torch.ones(6, dtype=torch.long))
    assert layer.active_units() == (ANALOG,)
    x = quantized_input(layer)
    w_a, b_a = manual_unit_weight_bias(layer, ANALOG)
    assert torch.allclose(layer(x), F.conv2d(x, w_a, b_a, padding=1), atol=1e-5)


def test_mapped_rejects_analog_on_depthwise_and_bad_shapes(diana):
    layer = make_mapped(diana, c_in=6, c_out=6, groups=6)
    with pytest.raises(ValueError, match=r"\['analog'\] cannot run this conv \(groups=6\)"):
        layer.set_assignment(torch.tensor([0, 0, 1, 0, 0, 0]))
    assert layer.assignment.tolist() == [DIGITAL] * 6  # unchanged
    with pytest.raises(ValueError, match="shape"):
        layer.set_assignment(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="cannot run"):
        make_mapped(diana).set_assignment(torch.tensor([0, 0, 2, 0, 0, 0]))


def test_mapped_assignment_survives_state_dict_round_trip(diana):
    layer = make_mapped(diana, assignment=torch.tensor([1, 0, 1, 1, 0, 1]))
    x = quantized_input(layer)
    fresh = make_mapped(diana)  # all digital, other weights
    fresh.load_state_dict(layer.state_dict())
    assert fresh.assignment.tolist() == [1, 0, 1, 1, 0, 1]
    assert fresh.active_units() == layer.active_units() == (DIGITAL, ANALOG)
    assert torch.equal(fresh.mask, layer.mask)
    fresh.input_quant.load_state_dict(layer.input_quant.state_dict())
    assert torch.equal(fresh(x), layer(x))


def test_mapped_gradients_reach_weights_not_mapping(diana):
    layer = make_mapped(diana, assignment=torch.tensor([1, 0, 1, 1, 0, 1]))
    layer(quantized_input(layer)).sum().backward()
    assert layer.weight.grad.abs().sum() > 0
    assert not layer.assignment.requires_grad and not hasattr(layer, "alpha")


# -- Conv2dBN -------------------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [1, 4])
def test_conv2d_bn_folded_matches_module_in_eval(groups):
    layer = Conv2dBN(4, 8 if groups == 1 else 4, 3, stride=2, groups=groups)
    layer.train()
    for _ in range(5):
        layer(torch.randn(8, 4, 9, 9) * 2 + 1)
    with torch.no_grad():
        layer.bn.weight.uniform_(0.5, 1.5)
        layer.bn.bias.normal_()
    layer.eval()
    assert not torch.allclose(layer.bn.running_var, torch.ones_like(layer.bn.running_var))
    x = torch.randn(3, 4, 9, 9)
    weight, bias = layer.folded()
    folded = F.conv2d(x, weight, bias, stride=2, padding=1, groups=groups)
    assert torch.allclose(folded, layer(x), atol=1e-5)


# -- eval mode: the deployed, exactly accumulated network -----------------------------------------


def tie_input(layer, shape=(1, 4, 6, 6)):
    """A quantized input whose conv output has many exact ties of the 8-bit step s/127."""
    return layer.input_quant(torch.randint(0, 3, shape).float() * float(layer.input_quant.step()))


@pytest.mark.parametrize("assignment", [[0] * 6, [1] * 6, [0, 1, 1, 0, 1, 0]])
def test_mapped_eval_is_exact_and_batch_invariant(diana, assignment):
    """Eval: the exact value of conv(x, Q(W)) + b (float64 reference), the same in any batch."""
    layer = make_mapped(diana, assignment=torch.tensor(assignment))
    x = quantized_input(layer, (16, 4, 7, 7))
    w_d, b_d = manual_unit_weight_bias(layer, DIGITAL)
    w_a, b_a = manual_unit_weight_bias(layer, ANALOG)
    x64 = x.double()
    y_d = F.conv2d(x64, w_d.double(), b_d.double(), padding=1)
    y_a = F.conv2d(x64, w_a.double(), b_a.double(), padding=1)
    exact = torch.where((torch.tensor(assignment) == 1).view(1, -1, 1, 1), y_a, y_d)
    layer.eval()
    with torch.no_grad():
        y = layer(x)
        singles = torch.cat([layer(x[i : i + 1]) for i in range(len(x))])
    assert torch.equal(y, singles)
    assert (y.double() - exact).abs().max().item() <= 1e-6
    layer.train()
    with torch.no_grad():  # training mode: the one-conv mix, equal up to rounding
        assert torch.allclose(layer(x), y, atol=1e-5)


def test_mapped_eval_rounds_each_output_once(diana):
    """Each eval output is the float32 rounding of the exact (float64) value, ties included."""
    layer = make_mapped(diana, assignment=torch.tensor([0, 0, 0, 1, 1, 1]))
    with torch.no_grad():  # small integer weights: the float64 sums are exact
        layer.weight.copy_(torch.randint(-3, 4, layer.weight.shape).float() / 4)
        layer.bias.zero_()
    layer.init_quantizers()
    x = tie_input(layer)
    w_d, _ = manual_unit_weight_bias(layer, DIGITAL)
    w_a, _ = manual_unit_weight_bias(layer, ANALOG)
    digital = layer.weight_quants[DIGITAL]
    s = float(digital.range().detach())
    codes = torch.round(127 * torch.clamp(layer.weight.detach() / s, -1, 1)).double()
    exact_d = F.conv2d(x.double(), codes * s, padding=1) / 127  # one rounding in float64
    layer.eval()
    with torch.no_grad():
        y = layer(x)
    assert torch.equal(y[:, :3], exact_d[:, :3].float())
    exact_a = F.conv2d(x.double(), w_a.double(), padding=1)
    assert torch.equal(y[:, 3:], exact_a[:, 3:].float())


def test_mapped_eval_keeps_gradients_when_asked(diana):
    """Eval with autograd on still reaches the weights and quantizers (the STEs, re-associated)."""
    layer = make_mapped(diana, assignment=torch.tensor([1, 0, 1, 1, 0, 1])).eval()
    layer(quantized_input(layer)).sum().backward()
    assert layer.weight.grad.abs().sum() > 0
    assert layer.weight_quants[ANALOG].log_scale.grad.abs().sum() > 0
    assert layer.bias.grad.abs().sum() > 0


def test_search_hard_eval_equals_mapped_eval(diana):
    """The hard search network in eval is the deployed network of its argmax mapping, exactly."""
    layer = make_search(diana)
    with torch.no_grad():
        layer.alpha.normal_()
    mapped = make_mapped(diana, assignment=layer.hard_assignment())
    mapped.load_state_dict(
        {k: v for k, v in layer.state_dict().items() if k not in ("alpha", "temperature")},
        strict=False,
    )
    mapped.set_assignment(layer.hard_assignment())
    mapped.input_quant.load_state_dict(layer.input_quant.state_dict())
    x = quantized_input(layer)
    layer.eval(), mapped.eval()
    with torch.no_grad(), hard_mapping(nn.Sequential(layer)):
        assert torch.equal(layer(x), mapped(x))
    with torch.no_grad():  # soft search in eval: still the one-conv mixture
        w, b = layer.effective_weight_bias()
        assert torch.equal(layer(x), F.conv2d(x, w, b, padding=1))


def _resnet18_wide_layer(diana, assignment):
    """A 3x3 conv with 512 input channels (fan-in 4608, ResNet18's last stage), large codes."""
    layer = make_mapped(diana, c_in=512, c_out=3, assignment=torch.tensor(assignment))
    with torch.no_grad():  # positive weights: partial sums grow far beyond 2^24 code units
        layer.weight.copy_(torch.rand(layer.weight.shape) * 0.5 + 0.5)
        layer.bias.zero_()
    layer.init_quantizers()
    x = layer.input_quant(torch.full((1, 512, 3, 3), 2.0) - torch.rand(1, 512, 3, 3) * 0.05)
    return layer.eval(), x


def _exact_digital(layer, x):
    """The exact output of the digital unit: integer codes summed in int64."""
    s = float(layer.weight_quants[DIGITAL].range().detach())
    codes = torch.round(127 * torch.clamp(layer.weight.detach() / s, -1, 1)).long()
    x_codes = torch.round(x * layer.input_quant.scale()).long()
    sums = (x_codes.flatten()[None, :] * codes.flatten(1)).sum(1)  # padding=1: centre pixel only
    assert int(sums.max()) > 2**24  # float32 could not hold these sums exactly
    return sums.double() * s / 127 / float(layer.input_quant.scale())


def test_exact_eval_is_exact_at_resnet18_fan_in(diana):
    """Fan-in 4608: the centre output equals the int64 sum rounded once (float32 was not)."""
    layer, x = _resnet18_wide_layer(diana, [0, 0, 0])
    assert layer.accumulation_dtype(DIGITAL) == torch.float64
    assert make_mapped(diana, c_in=64).accumulation_dtype(DIGITAL) == torch.float32  # res20
    with torch.no_grad():
        y = layer(x)
    assert y.dtype == torch.float32
    assert torch.equal(y[0, :, 1, 1], _exact_digital(layer, x).float())


def test_exact_eval_runs_outside_autocast(diana):
    """Under bf16 autocast the deployed network gives the same float32 numbers, not bfloat16."""
    layer, x = _resnet18_wide_layer(diana, [0, 1, 0])
    with torch.no_grad():
        plain = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = layer(x.bfloat16())
    assert mixed.dtype == torch.float32
    assert torch.equal(mixed, plain)
    assert torch.equal(plain[0, [0, 2], 1, 1], _exact_digital(layer, x)[[0, 2]].float())
