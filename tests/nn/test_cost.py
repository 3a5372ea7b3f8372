# SPDX-License-Identifier: Apache-2.0
"""Network costs through the real layers: baselines encoded in α cost exactly what the platform
says for their channel counts; regularizers are differentiable down to α."""

from __future__ import annotations

import pytest
import torch

from odimo.errors import ConfigError
from odimo.hw import GeometryTable, get_platform
from odimo.models import build_model, searchable_names
from odimo.nn import (
    ALPHA_INIT,
    REGULARIZERS,
    EnergyRegularizer,
    LatencyRegularizer,
    NaiveEnergyRegularizer,
    NetworkCost,
    NoRegularizer,
    apply_mapping,
    make_regularizer,
    search_layers,
)
from odimo.nn.baselines import baseline_mapping
from tests.reference import REFERENCE_SPECS, RefCost

#: DIANA's baselines (the default platform).
BASELINES = tuple(get_platform("diana").baselines())

NETS = ("res20", "res18", "mbv1")


@pytest.fixture(scope="module")
def search_nets():
    """Each reference network in search form with its NetworkCost and free layers (built once
    per module, on first use; the dry forward passes dominate this module's run time)."""
    from odimo.hw import get_platform

    platform = get_platform("diana")
    cache = {}

    def get(name: str):
        if name not in cache:
            torch.manual_seed(0)
            spec = REFERENCE_SPECS[name]
            model = build_model(spec, "search", platform)
            network = NetworkCost(model, platform, spec.input_size)
            cache[name] = (model, network, platform, searchable_names(model))
        return cache[name]

    return get


@pytest.fixture
def fresh_res20(search_nets):
    """The res20 search network with α back at its initial value and no gradients."""
    model, network, platform, _ = search_nets("res20")
    with torch.no_grad():
        for layer in search_layers(model):
            layer.alpha.fill_(ALPHA_INIT)
    model.zero_grad(set_to_none=True)
    return model, network, platform


def test_network_geometry_is_the_reference_geometry(search_nets, reference_geometry):
    for name in NETS:
        _, network, _, _ = search_nets(name)
        assert network.geometry == reference_geometry(name)


@pytest.mark.parametrize("baseline", list(BASELINES))
@pytest.mark.parametrize("net", NETS)
def test_alpha_encoding_a_baseline_costs_the_baseline(search_nets, net, baseline):
    model, network, platform, free = search_nets(net)
    mapping = baseline_mapping(baseline, network.geometry, platform, free)
    apply_mapping(model, mapping)
    hard = network(soft=False)
    table = GeometryTable(network.geometry, dtype=torch.float64)
    direct = platform.evaluate(mapping.counts_tensor(network.names), table)
    assert torch.equal(hard.counts, direct.counts)
    for got, want in [
        (hard.latency_cycles, direct.latency_cycles),
        (hard.energy_mw_cycles, direct.energy_mw_cycles),
        (hard.unit_cycles, direct.unit_cycles),
    ]:
        assert torch.allclose(got, want, rtol=1e-6, atol=0)
    # and the plain-Python transcription of §4 agrees layer by layer
    for i, g in enumerate(network.geometry):
        c_d, c_a = mapping.counts(g.name)
        assert float(hard.latency_cycles[i]) == pytest.approx(
            RefCost.latency(g, c_d, c_a), rel=1e-9
        )
        assert float(hard.energy_mw_cycles[i]) == pytest.approx(
            RefCost.energy(g, c_d, c_a), rel=1e-9
        )


@pytest.mark.parametrize("baseline", ["io_digital", "min_latency_max8"])
def test_soft_cost_of_a_confident_alpha_is_the_hard_cost(search_nets, baseline):
    model, network, platform, free = search_nets("res20")
    apply_mapping(model, baseline_mapping(baseline, network.geometry, platform, free), margin=40)
    soft, hard = network(soft=True), network(soft=False)
    assert soft.total_latency_cycles.item() == pytest.approx(
        hard.total_latency_cycles.item(), rel=1e-5
    )
    assert soft.total_energy_mw_cycles.item() == pytest.approx(
        hard.total_energy_mw_cycles.item(), rel=1e-5
    )


def test_fresh_search_model_is_all_digital_when_hard(fresh_res20):
    _, network, _ = fresh_res20
    summary = network.summary(soft=False)
    assert summary["latency_cycles"] == pytest.approx(257_673.25, rel=1e-12)
    assert summary["latency_ms"] == pytest.approx(257_673.25 / 260e3, rel=1e-9)
    assert summary["energy_uj"] == pytest.approx(24.96 * 257_673.25 / 260e6 * 1e3, rel=1e-9)
    assert summary["analog_frac"] == 0.0
    # soft counts at init: half of each layer's channels on each unit
    soft = network(soft=True)
    c_out = torch.tensor([g.c_out for g in network.geometry], dtype=torch.float32)
    assert torch.allclose(soft.counts, torch.stack([c_out / 2, c_out / 2], 1))
    assert network.summary(soft=True)["analog_frac"] == pytest.approx(0.5)
    # the soft latency is a max up to a tiny margin (τ = 1 cycle)
    assert torch.all(soft.latency_cycles >= soft.unit_cycles.amax(-1) - 0.2785)
    assert torch.all(soft.latency_cycles <= soft.unit_cycles.amax(-1) * (1 + 1e-6))


def test_depthwise_layers_cost_nothing_on_analog(search_nets):
    model, network, _, _ = search_nets("mbv1")
    for layer in search_layers(model):
        with torch.no_grad():
            layer.alpha.normal_()
    for soft in (True, False):
        cost = network(soft=soft)
        for i, g in enumerate(network.geometry):
            if g.groups > 1:
                assert cost.counts[i, 1].item() == 0.0
                assert cost.unit_cycles[i, 1].item() == 0.0
                assert cost.counts[i, 0].item() == g.c_out


@pytest.mark.parametrize("reg_cls", [LatencyRegularizer, EnergyRegularizer, NaiveEnergyRegularizer])
def test_regularizer_gradients_reach_alpha(reg_cls, fresh_res20):
    model, network, _ = fresh_res20
    reg = reg_cls(strength=1e-6)
    value = reg(network)
    assert value.ndim == 0 and value.item() > 0
    assert value.item() == pytest.approx(1e-6 * reg.cost(network).item(), rel=1e-6)
    value.backward()
    grads = [layer.alpha.grad for layer in search_layers(model)]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    # the cost depends on the mapping only: weights get no gradient from it
    assert all(layer.weight.grad is None for layer in search_layers(model))


def test_regularizers_values(fresh_res20):
    _, network, _ = fresh_res20
    soft = network(soft=True)
    assert LatencyRegularizer(1.0)(network).item() == pytest.approx(
        soft.total_latency_cycles.item()
    )
    assert EnergyRegularizer(1.0)(network).item() == pytest.approx(
        soft.total_energy_mw_cycles.item()
    )
    assert NaiveEnergyRegularizer(1.0)(network).item() == pytest.approx(
        soft.unit_cycles.sum().item()
    )
    none = NoRegularizer()
    assert none(network).item() == 0.0 and NoRegularizer(5.0)(network).item() == 0.0


def test_regularizer_registry_and_errors():
    assert set(REGULARIZERS) == {"latency", "power", "power-naive", "none"}
    assert isinstance(make_regularizer("power", 1e-9), EnergyRegularizer)
    assert make_regularizer("latency", 2.0).strength == 2.0
    with pytest.raises(ConfigError, match="unknown reg 'speed'"):
        make_regularizer("speed", 1.0)
    with pytest.raises(ConfigError, match="strength"):
        LatencyRegularizer(-1.0)
    with pytest.raises(ConfigError, match="strength"):
        LatencyRegularizer(float("nan"))


def test_network_cost_needs_a_quantized_model(diana):
    spec = REFERENCE_SPECS["res20"]
    with pytest.raises(ConfigError, match="not a quantized conv"):
        NetworkCost(build_model(spec, "float"), diana, spec.input_size)


def test_mapped_model_cost_follows_its_assignment(diana):
    spec = REFERENCE_SPECS["mbv1"]
    model = build_model(spec, "mapped", diana)
    network = NetworkCost(model, diana, spec.input_size)
    mapping = baseline_mapping("min_latency_max8", network.geometry, diana, searchable_names(model))
    apply_mapping(model, mapping)
    table = GeometryTable(network.geometry, dtype=torch.float64)
    direct = diana.evaluate(mapping.counts_tensor(network.names), table)
    for soft in (False, True):  # a frozen mapping has whole counts either way
        cost = network(soft=soft)
        assert float(cost.total_latency_cycles) == pytest.approx(
            float(direct.total_latency_cycles), rel=1e-6
        )
    assert torch.equal(network(soft=False).counts, direct.counts)
