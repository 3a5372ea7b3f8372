# SPDX-License-Identifier: Apache-2.0
"""Discretisation-aware search: sampling modes, polarisation, target mode, slack filling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from odimo.hw.geometry import GeometryTable
from odimo.models import ModelSpec, build_model
from odimo.nn import (
    SAMPLING,
    LatencyRegularizer,
    NetworkCost,
    SearchConv2d,
    TargetRegularizer,
    polarization,
    search_layers,
    set_sampling,
    set_temperature,
)
from odimo.nn.baselines import baseline_mapping
from odimo.nn.slack import fill_slack
from odimo.quant import UintActPact

SPEC = ModelSpec("res20", (1, 16, 16), 10)


def make_layer(diana, c_out: int = 6) -> SearchConv2d:
    layer = SearchConv2d(4, c_out, 3, 1, 1, platform=diana, input_quant=UintActPact(2.0))
    layer.init_quantizers()
    return layer


def search_model(diana):
    torch.manual_seed(0)
    model = build_model(SPEC, "search", diana)
    for layer in search_layers(model):
        layer.init_quantizers()
    return model


def test_hard_sampling_forward_is_the_argmax_network(diana):
    layer = make_layer(diana).train()
    with torch.no_grad():
        layer.alpha.normal_(0, 1)
    set_sampling(layer, "hard")
    x = torch.rand(2, 4, 5, 5)
    a = layer.hard_assignment()
    w = torch.stack([layer.unit_weight_bias(u)[0] for u in (0, 1)])  # [U, C, ...]
    b = torch.stack([layer.unit_weight_bias(u)[1] for u in (0, 1)])
    idx = torch.arange(layer.out_channels)
    expected = F.conv2d(x, w[a, idx], b[a, idx], padding=1)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-6)


def test_hard_sampling_gradient_flows_through_the_softmax(diana):
    """Straight-through: dL/dα = J_softmax(α/T)ᵀ · (dL/dp at the one-hot point)."""
    layer = make_layer(diana).train()
    with torch.no_grad():
        layer.alpha.normal_(0, 1)
        layer.temperature.fill_(0.7)
    set_sampling(layer, "hard")
    x = torch.rand(2, 4, 5, 5)
    layer(x).square().sum().backward()
    got = layer.alpha.grad.clone()
    # independent computation: make p a leaf at the one-hot value, get dL/dp, chain by hand
    one_hot = F.one_hot(layer.hard_assignment(), 2).T.float().requires_grad_(True)
    units = [layer.unit_weight_bias(u) for u in (0, 1)]
    weight = sum(one_hot[u].view(-1, 1, 1, 1) * units[u][0] for u in (0, 1))
    bias = sum(one_hot[u] * units[u][1] for u in (0, 1))
    F.conv2d(x, weight, bias, padding=1).square().sum().backward()
    g = one_hot.grad  # [U, C]
    p = torch.softmax(layer.alpha.detach() / 0.7, dim=0)
    expected = p * (g - (p * g).sum(0, keepdim=True)) / 0.7
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    assert got.abs().sum() > 0


@pytest.mark.parametrize("mode", ["hard", "gumbel_hard"])
def test_hard_modes_cost_counts_are_whole_and_differentiable(diana, mode):
    layer = make_layer(diana, c_out=8).train()
    with torch.no_grad():
        layer.alpha.normal_(0, 1)
    set_sampling(layer, mode)
    counts = layer.unit_counts(soft=True)
    torch.testing.assert_close(counts, layer.unit_counts(soft=False))
    counts[1].backward()
    assert layer.alpha.grad[1].abs().min() > 0  # every channel gets a gradient


def test_gumbel_samples_in_training_only(diana):
    layer = make_layer(diana, c_out=64).train()
    set_sampling(layer, "gumbel")
    noisy = layer.unit_weights()
    assert not torch.allclose(noisy, layer.probabilities())
    torch.testing.assert_close(noisy.sum(0), torch.ones(64))
    set_sampling(layer, "gumbel_hard")
    one_hot = layer.unit_weights()
    assert set(one_hot.unique().tolist()) <= {0.0, 1.0}
    # α tied: Gumbel noise picks each unit for some channels
    assert 0 < int(one_hot[1].sum()) < 64
    layer.eval()
    torch.testing.assert_close(layer.unit_weights(), layer.probabilities())


def test_unknown_sampling_is_refused(diana):
    with pytest.raises(ValueError, match="unknown sampling"):
        set_sampling(make_layer(diana), "annealed")
    assert SAMPLING == ("soft", "hard", "gumbel", "gumbel_hard")


def test_polarization_is_one_when_uniform_and_zero_when_one_hot(diana):
    model = search_model(diana)
    assert float(polarization(model).detach()) == pytest.approx(1.0, abs=1e-6)  # α tied
    with torch.no_grad():
        for layer in search_layers(model):
            layer.alpha[0].fill_(5.0)
    set_temperature(model, 1e-2)
    assert float(polarization(model)) == pytest.approx(0.0, abs=1e-6)
    set_temperature(model, 1.0)
    p = torch.softmax(torch.tensor([5.0 - 0.01 * 0, 0.01]), 0)  # one channel, by hand
    expected = (1 - (p * p).sum()) * 2
    assert float(polarization(model)) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_one_alpha_step_lowers_the_soft_and_the_hard_cost(diana, mode):
    """A descent check of the regularised target, not just `grad != 0`."""
    model = search_model(diana)
    set_sampling(model, mode)
    network = NetworkCost(model, diana, SPEC.input_size)
    reg = LatencyRegularizer(1e-4)
    alphas = [layer.alpha for layer in search_layers(model)]
    optimizer = torch.optim.Adam(alphas, lr=1e-3)
    soft0, hard0 = float(reg.cost(network)), reg.hard_cost(network)
    reg(network).backward()
    optimizer.step()
    soft1, hard1 = float(reg.cost(network)), reg.hard_cost(network)
    assert soft1 < soft0
    assert hard1 < hard0


def test_target_mode_penalises_only_the_excess_and_calibrates(diana):
    model = search_model(diana)
    network = NetworkCost(model, diana, SPEC.input_size)
    base = LatencyRegularizer(0.0)
    cost = float(base.cost(network))
    above = TargetRegularizer(base, cost * 0.5)
    strength = above.calibrate(task_loss=2.0, initial_cost=cost)
    assert strength == pytest.approx(2.0 / (cost * 0.5))
    # at the start the penalty equals the task loss
    assert float(above(network)) == pytest.approx(2.0, rel=1e-6)
    below = TargetRegularizer(base, cost * 2.0)
    below.calibrate(task_loss=2.0, initial_cost=cost)
    assert float(below(network)) == 0.0
    assert below.strength == pytest.approx(2.0 / (0.05 * cost * 2.0))
    with pytest.raises(Exception, match="target must be > 0"):
        TargetRegularizer(base, 0.0)


def test_strength_scale_multiplies_the_penalty(diana):
    model = search_model(diana)
    network = NetworkCost(model, diana, SPEC.input_size)
    reg = LatencyRegularizer(1e-6)
    full = float(reg(network))
    reg.scale = 0.01
    assert float(reg(network)) == pytest.approx(full * 0.01)


def _all_analog(model):
    with torch.no_grad():
        for layer in search_layers(model):
            layer.alpha[1] += 1.0 + torch.rand(layer.out_channels)  # analog wins, varied margins


def test_fill_slack_matches_the_max8_rule_and_never_raises_latency(diana):
    """From all-analog, filling gives each layer min_latency_max8's digital count exactly."""
    model = search_model(diana)
    _all_analog(model)
    network = NetworkCost(model, diana, SPEC.input_size)
    before = network(soft=False)
    pairs = zip(network.names, network.layers)
    margins = {n: (layer.alpha[0] - layer.alpha[1]).clone() for n, layer in pairs}
    moved = fill_slack(network, "latency")
    after = network(soft=False)
    assert (after.latency_cycles <= before.latency_cycles * (1 + 1e-12)).all()
    max8 = baseline_mapping("min_latency_max8", network.geometry, diana)
    analog = baseline_mapping("all_analog", network.geometry, diana)
    for i, name in enumerate(network.names):
        expected = max8.counts(name)[0] - analog.counts(name)[0]
        assert moved.get(name, 0) == expected, name
        digital = torch.nonzero(network.layers[i].hard_assignment() == 0).flatten()
        if expected:  # the channels moved are those whose α was closest to digital
            top = torch.argsort(margins[name], descending=True)[:expected]
            assert set(digital.tolist()) == set(top.tolist()), name
    assert sum(moved.values()) > 0


def test_fill_slack_for_energy_never_raises_energy(diana):
    model = search_model(diana)
    _all_analog(model)
    network = NetworkCost(model, diana, SPEC.input_size)
    before = network(soft=False).energy_mw_cycles
    fill_slack(network, "energy")
    after = network(soft=False).energy_mw_cycles
    assert (after <= before * (1 + 1e-12)).all()


def test_fill_slack_leaves_digital_layers_alone(diana):
    model = search_model(diana)  # α tied: all digital
    network = NetworkCost(model, diana, SPEC.input_size)
    table = GeometryTable(network.geometry, dtype=torch.float64)
    before = float(diana.evaluate(network.counts(soft=False).double(), table).total_latency_cycles)
    assert fill_slack(network, "latency") == {}
    assert float(network(soft=False).total_latency_cycles) == pytest.approx(before)
