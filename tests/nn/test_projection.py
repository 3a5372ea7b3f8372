# SPDX-License-Identifier: Apache-2.0
"""Target projection at the hand-over: lands on the target, α decides which channels move."""

from __future__ import annotations

import torch

from odimo.hw.geometry import GeometryTable
from odimo.models import ModelSpec, build_model
from odimo.nn import NetworkCost, search_layers
from odimo.nn.baselines import baseline_mapping
from odimo.nn.network_cost import EnergyRegularizer, LatencyRegularizer, TargetRegularizer
from odimo.nn.projection import project_to_target

SPEC = ModelSpec("res20", (1, 16, 16), 10)


def setup(diana, analog_wins: bool, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(SPEC, "search", diana)
    for layer in search_layers(model):
        layer.init_quantizers()
        with torch.no_grad():  # varied margins, all one way
            layer.alpha[1 if analog_wins else 0] += 0.5 + torch.rand(layer.out_channels)
    return model, NetworkCost(model, diana, SPEC.input_size)


def baseline_cost(name: str, network: NetworkCost, diana, objective: str = "latency") -> float:
    mapping = baseline_mapping(name, network.geometry, diana)
    counts = torch.tensor([[mapping.counts(n)[u] for u in range(2)] for n in network.names])
    cost = diana.evaluate(counts.double(), GeometryTable(network.geometry, dtype=torch.float64))
    per_layer = cost.latency_cycles if objective == "latency" else cost.energy_mw_cycles
    return float(per_layer.sum())


def attachment(network: NetworkCost, unit: int) -> dict[str, torch.Tensor]:
    pairs = zip(network.names, network.layers)
    return {name: (layer.alpha[unit] - layer.alpha[1 - unit]).clone() for name, layer in pairs}


def test_repair_meets_the_target_moving_the_least_attached_channels(diana):
    model, network = setup(diana, analog_wins=False)  # all digital
    reg = TargetRegularizer(LatencyRegularizer(0.0), 1.0)
    top = reg.hard_cost(network)
    low = baseline_cost("min_latency", network, diana)
    target = low + 0.4 * (top - low)
    reg.target = target
    pairs = zip(network.names, network.layers)
    before = {name: layer.hard_assignment().clone() for name, layer in pairs}
    margins = attachment(network, 0)
    report = project_to_target(network, reg, target)
    assert report["direction"] == "repair" and report["met"]
    assert report["cost_before"] == top and report["cost_after"] <= target * (1 + 1e-9)
    assert report["cost_after"] == reg.hard_cost(network)
    assert report["cost_after"] > low  # it stopped at the target, not at the minimum
    for name, layer in zip(network.names, network.layers):
        now = layer.hard_assignment()
        moved = torch.nonzero((before[name] == 0) & (now == 1)).flatten()
        assert moved.numel() == report["channels_to_cheap"].get(name, 0)
        if moved.numel():  # the channels least attached to digital went first
            least = torch.argsort(margins[name])[: moved.numel()]
            assert set(moved.tolist()) == set(least.tolist()), name


def test_repair_prefers_the_layer_whose_alpha_cares_least(diana):
    model, network = setup(diana, analog_wins=False)
    names = network.names
    soft = names[5]  # every other layer's α holds its channels firmly (margin 5)
    with torch.no_grad():
        for name, layer in zip(names, network.layers):
            layer.alpha[0] = layer.alpha[1] + (0.01 if name == soft else 5.0)
    reg = TargetRegularizer(LatencyRegularizer(0.0), 1.0)
    cost = network(soft=False).latency_cycles
    i = names.index(soft)
    target = float(cost.sum() - 0.01 * cost[i])  # a small cut either layer could give
    report = project_to_target(network, reg, target)
    assert report["met"] and set(report["channels_to_cheap"]) == {soft}


def test_repair_below_the_minimum_stops_at_min_latency_and_says_not_met(diana):
    model, network = setup(diana, analog_wins=False)
    low = baseline_cost("min_latency", network, diana)
    reg = TargetRegularizer(LatencyRegularizer(0.0), 0.5 * low)
    report = project_to_target(network, reg, 0.5 * low)
    assert not report["met"]
    assert abs(report["cost_after"] - low) <= 1e-9 * low


def test_spend_uses_the_room_and_no_further_move_fits(diana):
    model, network = setup(diana, analog_wins=True)  # all analog
    reg = TargetRegularizer(LatencyRegularizer(0.0), 1.0)
    low = reg.hard_cost(network)
    top = baseline_cost("all_digital", network, diana)
    target = low + 0.5 * (top - low)
    digital_before = sum(int((layer.hard_assignment() == 0).sum()) for layer in network.layers)
    report = project_to_target(network, reg, target)
    assert report["direction"] == "spend" and report["met"]
    assert low < report["cost_after"] <= target * (1 + 1e-9)
    digital_after = sum(int((layer.hard_assignment() == 0).sum()) for layer in network.layers)
    assert digital_after - digital_before == sum(report["channels_to_precise"].values()) > 0
    # maximal: moving any further channel count of any layer to digital breaks the target
    table = GeometryTable(network.geometry, dtype=torch.float64)
    counts = network.counts(soft=False).double()
    base = diana.evaluate(counts, table).latency_cycles
    room = target - float(base.sum())
    for i in range(len(network.layers)):
        n = int(counts[i, 1])
        for k in range(1, n + 1):
            trial = counts.clone()
            trial[i, 0] += k
            trial[i, 1] -= k
            added = float(diana.evaluate(trial, table).latency_cycles[i] - base[i])
            assert added > room + 1e-6 * target, (network.names[i], k)


def test_spend_for_energy_stays_within_an_energy_target(diana):
    model, network = setup(diana, analog_wins=True)
    base = EnergyRegularizer(0.0)
    low = base.hard_cost(network)
    reg = TargetRegularizer(base, 1.2 * low)
    report = project_to_target(network, reg, 1.2 * low)
    assert report["met"] and low < report["cost_after"] <= 1.2 * low * (1 + 1e-9)
    assert report["cost_after"] == float(network(soft=False).energy_mw_cycles.sum())


def test_repair_moves_a_lone_analog_channel_back_when_that_is_cheaper(diana):
    """One analog channel costs a layer the analog unit's fixed load: undoing it is the repair."""
    model, network = setup(diana, analog_wins=False)
    digital = LatencyRegularizer(0.0).hard_cost(network)
    for i in range(len(network.layers)):  # the first layer one analog channel slows
        layer = network.layers[i]
        with torch.no_grad():
            layer.alpha[1, 0] = layer.alpha[0, 0] + 5.0  # firmly analog
        if LatencyRegularizer(0.0).hard_cost(network) > digital:
            break
        with torch.no_grad():
            layer.alpha[1, 0] = layer.alpha[0, 0] - 5.0
    reg = TargetRegularizer(LatencyRegularizer(0.0), digital)
    assert reg.hard_cost(network) > digital  # the lone analog channel made it slower
    report = project_to_target(network, reg, digital)
    assert report["met"] and report["cost_after"] == digital
    assert report["channels_to_precise"] == {network.names[i]: 1}
