# SPDX-License-Identifier: Apache-2.0
"""The manual baseline mappings, checked against their rule by brute force on the §4 model."""

from __future__ import annotations

import pytest
import torch

from odimo.errors import ConfigError
from odimo.hw import GeometryTable, get_platform
from odimo.models import build_model, searchable_names
from odimo.nn.baselines import baseline_assignments, baseline_mapping
from tests.reference import REFERENCE_SPECS, RefCost

#: DIANA's baselines (the default platform).
BASELINES = tuple(get_platform("diana").baselines())

DIGITAL, ANALOG = 0, 1
NETS = ("res20", "res18", "mbv1")


@pytest.fixture(scope="module")
def searchable():
    """Names of the free layers of each reference network."""
    out = {}
    for name in NETS:
        spec = REFERENCE_SPECS[name]
        out[name] = searchable_names(build_model(spec, "float"))
    return out


def test_searchable_layers_of_the_reference_networks(searchable, reference_geometry):
    assert searchable["res20"] == [g.name for g in reference_geometry("res20")]
    assert searchable["res18"] == [g.name for g in reference_geometry("res18")]
    points = [f"backbone.bb_{i}.point" for i in range(1, 14)]
    assert searchable["mbv1"] == points


def brute_force_max8(g) -> int:
    """Largest k in 0..C_out whose latency with k channels digital does not exceed all-analog."""
    all_analog = RefCost.latency(g, 0, g.c_out)
    fits = [k for k in range(g.c_out + 1) if RefCost.latency(g, k, g.c_out - k) <= all_analog]
    return max(fits)


@pytest.mark.parametrize("net", NETS)
def test_min_latency_and_max8_follow_their_rule(net, diana, reference_geometry, searchable):
    geometry = reference_geometry(net)
    free = set(searchable[net])
    min_lat = baseline_assignments("min_latency", geometry, diana, free)
    max8 = baseline_assignments("min_latency_max8", geometry, diana, free)
    for g in geometry:
        if g.name not in free:
            assert max8[g.name] == min_lat[g.name] == [DIGITAL] * g.c_out
            continue
        faster = ANALOG if RefCost.analog(g, g.c_out) < RefCost.digital(g, g.c_out) else DIGITAL
        assert min_lat[g.name] == [faster] * g.c_out, g.name
        k = sum(1 for u in max8[g.name] if u == DIGITAL)
        if faster == DIGITAL:
            assert k == g.c_out
            continue
        assert k == brute_force_max8(g), g.name
        # the chosen k does not raise the layer's latency; one more channel would
        base = RefCost.latency(g, 0, g.c_out)
        assert RefCost.latency(g, k, g.c_out - k) <= base
        assert all(RefCost.latency(g, j, g.c_out - j) > base for j in range(k + 1, g.c_out + 1))


@pytest.mark.parametrize(
    "net, layer, digital",
    [
        ("res18", "fc", 112),  # the reference hard-codes 127
        ("mbv1", "backbone.bb_12.point", 32),  # the reference hard-codes 31
        ("mbv1", "backbone.bb_13.point", 32),
    ],
)
def test_min_latency_max8_counts_of_the_method(
    net, layer, digital, diana, reference_geometry, searchable
):
    mapping = baseline_mapping("min_latency_max8", reference_geometry(net), diana, searchable[net])
    g = next(g for g in reference_geometry(net) if g.name == layer)
    assert mapping.counts(layer) == [digital, g.c_out - digital]


@pytest.mark.parametrize("net", NETS)
def test_fixed_rules(net, diana, reference_geometry, searchable):
    geometry = reference_geometry(net)
    maps = {b: baseline_mapping(b, geometry, diana, searchable[net]) for b in BASELINES}
    for b, m in maps.items():
        assert list(m.layers) == [g.name for g in geometry], b  # execution order
        assert (m.platform, m.units) == ("diana", ("digital", "analog"))
        m.check(geometry, diana)  # valid: depthwise never analog
    last = len(geometry) - 1
    for i, g in enumerate(geometry):
        free = g.name in searchable[net] and g.groups == 1
        assert maps["all_digital"].counts(g.name) == [g.c_out, 0]
        # all_analog: every layer the analog core can run (groups 1), fixed ones included
        analog_ok = g.groups == 1
        assert maps["all_analog"].counts(g.name) == ([0, g.c_out] if analog_ok else [g.c_out, 0])
        io = i in (0, last) or not free
        assert maps["io_digital"].counts(g.name) == ([g.c_out, 0] if io else [0, g.c_out]), g.name


def test_mbv1_fixed_layers_stay_digital(diana, reference_geometry, searchable):
    geometry = reference_geometry("mbv1")
    for b in BASELINES:
        m = baseline_mapping(b, geometry, diana, searchable["mbv1"])
        for g in geometry:
            if g.groups > 1 or (g.name in ("input_layer", "fc") and b != "all_analog"):
                assert m.counts(g.name) == [g.c_out, 0], (b, g.name)


def test_mbv1_all_analog_is_not_io_digital(diana, reference_geometry, searchable):
    """The reference's all-ternary MobileNet: input conv and classifier analog too."""
    geometry = reference_geometry("mbv1")
    all_analog = baseline_mapping("all_analog", geometry, diana, searchable["mbv1"])
    io = baseline_mapping("io_digital", geometry, diana, searchable["mbv1"])
    assert all_analog.counts("input_layer") == [0, 8] and all_analog.counts("fc") == [0, 2]
    assert all_analog.layers != io.layers
    for g in geometry:  # only the depthwise convs stay digital
        expected = [g.c_out, 0] if g.groups > 1 else [0, g.c_out]
        assert all_analog.counts(g.name) == expected, g.name


def test_res20_baseline_totals(diana, reference_geometry, searchable):
    geometry = reference_geometry("res20")
    table = GeometryTable(geometry, dtype=torch.float64)

    def total(name):
        m = baseline_mapping(name, geometry, diana, searchable["res20"])
        cost = diana.evaluate(m.counts_tensor(table.names), table)
        return float(cost.total_latency_cycles), float(
            diana.mw_cycles_to_uj(cost.total_energy_mw_cycles)
        )

    assert total("all_digital")[0] == pytest.approx(257_673.25, rel=1e-12)
    latency, energy = total("io_digital")
    assert latency == pytest.approx(86_964.45, rel=1e-12)
    assert energy == pytest.approx(9.5514, abs=5e-5)
    # min-latency never loses to any other baseline on latency
    best = total("min_latency")[0]
    assert all(best <= total(b)[0] + 1e-6 for b in BASELINES)
    assert total("min_latency_max8")[0] == pytest.approx(best, rel=1e-12)


def test_unknown_baseline(diana, reference_geometry):
    with pytest.raises(ConfigError, match="unknown baseline 'fastest'"):
        baseline_mapping("fastest", reference_geometry("res20"), diana)


def test_without_searchable_every_layer_is_free(diana, reference_geometry):
    geometry = reference_geometry("mbv1")
    m = baseline_mapping("all_analog", geometry, diana)
    assert m.counts("input_layer") == [0, 8]
    assert m.counts("backbone.bb_1.depth") == [8, 0]  # depthwise still digital
