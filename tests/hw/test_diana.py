# SPDX-License-Identifier: Apache-2.0
"""The DIANA cost model: golden values of the method's §4, on hand-written and real geometry,
and its properties (monotone, flat analog passes, zero channels free, smooth max)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from odimo.errors import ConfigError
from odimo.hw import Diana, GeometryTable, LayerGeometry, counts_from_assignment, get_platform
from odimo.hw.diana import (
    ANALOG_PASS_CYCLES,
    analog_cycles,
    analog_unroll,
    digital_cycles,
    energy_mw_cycles,
)
from tests.reference import RefCost

F64 = torch.float64

# Whole-layer (T_d, T_a) of ResNet20 layers, method §4 sanity values.
RES20_SANITY = {
    "conv1": (4160.0, 4875.2),
    "backbone.bb_1_0.conv1": (13312.0, 5811.2),
    "backbone.bb_1_2.conv2": (13312.0, 5811.2),
    "backbone.bb_2_1.conv1": (11264.0, 3468.8),
    "backbone.bb_2_2.conv2": (11264.0, 3468.8),
    "backbone.bb_3_0.conv2": (19456.0, 4899.2),
    "backbone.bb_3_2.conv1": (19456.0, 4899.2),
    "fc": (73.25, 514.275),
}


def geom(c_in, c_out, k, o, groups=1, name="l"):
    return LayerGeometry(name, c_in, c_out, k, k, 1, groups, o, o)


def table(*layers):
    return GeometryTable(list(layers), dtype=F64)


def cycles(c_d, c_a, g):
    t = table(g)
    d = digital_cycles(torch.tensor([float(c_d)], dtype=F64), t)
    a = analog_cycles(torch.tensor([float(c_a)], dtype=F64), t)
    return float(d), float(a)


def whole_layer(geometry, diana):
    """[L, 2] cycles of every layer entirely on each unit (through the platform)."""
    t = GeometryTable(geometry, dtype=F64)
    d = diana.unit_cycles(torch.stack([t.c_out, torch.zeros_like(t.c_out)], 1), t)[:, 0]
    a = diana.unit_cycles(torch.stack([torch.zeros_like(t.c_out), t.c_out], 1), t)[:, 1]
    return d, a


@pytest.mark.parametrize(
    "g, expected",
    [
        (geom(3, 16, 3, 32), (4160.0, 4875.2)),
        (geom(16, 16, 3, 32), (13312.0, 5811.2)),
        (geom(32, 32, 3, 16), (11264.0, 3468.8)),
        (geom(64, 64, 3, 8), (19456.0, 4899.2)),
        (geom(64, 10, 1, 1), (73.25, 514.275)),
    ],
)
def test_method_sanity_values_from_the_functions(g, expected):
    t_d, t_a = cycles(g.c_out, g.c_out, g)
    assert t_d == pytest.approx(expected[0], rel=1e-12)
    assert t_a == pytest.approx(expected[1], rel=1e-12)


def test_method_sanity_values_on_res20_layers(reference_geometry, diana):
    geometry = reference_geometry("res20")
    d, a = whole_layer(geometry, diana)
    by_name = {g.name: i for i, g in enumerate(geometry)}
    for name, (t_d, t_a) in RES20_SANITY.items():
        i = by_name[name]
        assert float(d[i]) == pytest.approx(t_d, rel=1e-12), name
        assert float(a[i]) == pytest.approx(t_a, rel=1e-12), name


def test_res20_all_digital_and_io_digital_totals(reference_geometry, diana):
    geometry = reference_geometry("res20")
    t = GeometryTable(geometry, dtype=F64)
    all_digital = torch.stack([t.c_out, torch.zeros_like(t.c_out)], 1)
    cost = diana.evaluate(all_digital, t)
    assert float(cost.total_latency_cycles) == pytest.approx(257_673.25, rel=1e-12)
    assert float(cost.total_energy_mw_cycles) == pytest.approx(24.96 * 257_673.25, rel=1e-12)

    io = all_digital.flip(1).clone()
    io[0], io[-1] = all_digital[0], all_digital[-1]
    cost = diana.evaluate(io, t)
    latency = float(cost.total_latency_cycles)
    assert latency == pytest.approx(86_964.45, rel=1e-12)
    energy_uj = float(diana.mw_cycles_to_uj(cost.total_energy_mw_cycles))
    assert energy_uj == pytest.approx(9.5514, abs=5e-5)
    # µJ = mW·cycles / 260e6 · 1e3
    assert energy_uj == pytest.approx(float(cost.total_energy_mw_cycles) / 260e6 * 1e3)
    assert diana.cycles_to_ms(latency) == pytest.approx(86_964.45 / 260e3)


def test_unit_conversions(diana):
    assert diana.freq_hz == 260e6
    assert diana.cycles_to_ms(260e6) == pytest.approx(1000.0)
    assert diana.cycles_to_ms(257_673.25) == pytest.approx(0.991050961538, rel=1e-9)
    assert diana.mw_cycles_to_uj(260e6) == pytest.approx(1000.0)  # 1 mW for 1 s = 1 mJ
    assert float(diana.cycles_to_ms(torch.tensor(2.6e5))) == pytest.approx(1.0)
    assert abs(ANALOG_PASS_CYCLES - 18.2) < 1e-9


@pytest.mark.parametrize(
    "g, c_a, u",
    [
        (geom(64, 10, 1, 1), 10, 8),  # res20 fc
        (geom(3, 16, 3, 32), 16, 4),  # first conv: (u+2)*64*3 <= 1152
        (geom(512, 200, 1, 1), 200, 2),  # res18 fc: u*512 <= 1152
        (geom(16, 16, 3, 32), 16, 4),
        (geom(64, 64, 3, 8), 64, 4),  # (4+2)*64*3 = 1152 rows, 4*64 <= 512 columns
        (geom(256, 256, 3, 16), 256, 1),  # 3*256*3 > 1152: nothing fits, u = 1
        (geom(64, 100, 1, 1), 100, 4),  # columns limit: 8*100 > 512
        (geom(64, 0, 1, 1), 0, 8),
    ],
)
def test_analog_unroll(g, c_a, u):
    got = analog_unroll(torch.tensor([float(c_a)], dtype=F64), table(g))
    assert float(got) == u == RefCost.unroll(g, c_a)


@pytest.mark.parametrize(
    "net, layer, u", [("res20", "fc", 8), ("res20", "conv1", 4), ("res18", "fc", 2)]
)
def test_analog_unroll_of_reference_layers(net, layer, u, reference_geometry):
    g = next(g for g in reference_geometry(net) if g.name == layer)
    got = analog_unroll(torch.tensor([float(g.c_out)], dtype=F64), table(g))
    assert float(got) == u


def test_unroll_carries_no_gradient():
    c = torch.tensor([10.0], dtype=F64, requires_grad=True)
    assert not analog_unroll(c, table(geom(64, 10, 1, 1))).requires_grad


def test_zero_channels_cost_zero_on_a_unit(reference_geometry):
    for name in ("res20", "res18", "mbv1"):
        t = GeometryTable(reference_geometry(name), dtype=F64)
        zeros = torch.zeros(len(t), dtype=F64)
        assert torch.equal(digital_cycles(zeros, t), zeros)
        assert torch.equal(analog_cycles(zeros, t), zeros)


def test_depthwise_digital_counts_one_channel_group(reference_geometry):
    """For a depthwise conv c_d/g = 1: only the spatial dimension is parallel."""
    g = next(g for g in reference_geometry("mbv1") if g.name == "backbone.bb_2.depth")
    assert g.groups == g.c_out == 16
    expected = 1 * 16 * 2 * 24 * 9 + 24 * 24 * (16 + 16) / 8
    assert cycles(16, 0, g)[0] == pytest.approx(expected) == RefCost.digital(g, 16)


def test_depthwise_cannot_use_analog(diana):
    assert diana.allowed_units(groups=8) == [True, False]
    assert diana.allowed_units(geom(8, 8, 3, 4, groups=8)) == [True, False]
    assert diana.allowed_units(groups=1) == [True, True]


geometries = st.builds(
    lambda c_in, k, o, s: LayerGeometry("g", c_in, 1, k, k, s, 1, o, o),
    c_in=st.integers(1, 700),
    k=st.sampled_from([1, 3, 5]),
    o=st.integers(1, 70),
    s=st.just(1),
)


@given(g=geometries, c_d=st.integers(0, 1100), c_a=st.integers(0, 1100))
@settings(max_examples=150, deadline=None)
def test_vectorised_model_matches_method_transcription(g, c_d, c_a):
    t_d, t_a = cycles(c_d, c_a, g)
    assert t_d == pytest.approx(RefCost.digital(g, c_d), rel=1e-12, abs=1e-9)
    assert t_a == pytest.approx(RefCost.analog(g, c_a), rel=1e-12, abs=1e-9)


@given(g=geometries, c=st.integers(0, 1100))
@settings(max_examples=150, deadline=None)
def test_cycles_monotone_non_decreasing_in_channels(g, c):
    d0, a0 = cycles(c, c, g)
    d1, a1 = cycles(c + 1, c + 1, g)
    assert d1 >= d0
    assert a1 >= a0


@given(g=geometries)
@settings(max_examples=60, deadline=None)
def test_analog_pass_term_flat_below_array_width(g):
    """The pass term does not grow with c_a in 1..512/u while the unroll u stays the same."""
    c = torch.arange(1, 513, dtype=F64)
    tt = GeometryTable([g] * 512, dtype=F64)
    u = analog_unroll(c, tt)
    passes = analog_cycles(c, tt) - 8 * g.c_in * g.k_x * g.k_y
    u_rows = float(u[0])  # at one channel only the array rows limit the unroll
    flat = passes[: int(512 // u_rows)]
    assert torch.all(u[: int(512 // u_rows)] == u_rows)
    assert torch.all(flat == flat[0])
    assert float(flat[0]) == pytest.approx(
        ((g.c_in + 127) // 128) * g.o_x * g.o_y / u_rows * 18.2, rel=1e-12
    )


def test_analog_cycles_flat_for_all_512_columns_when_unroll_is_one():
    g = geom(256, 512, 3, 16)  # rows allow u = 1 only
    c = torch.arange(1, 513, dtype=F64)
    a = analog_cycles(c, GeometryTable([g] * 512, dtype=F64))
    assert torch.all(a == a[0])
    assert float(analog_cycles(torch.tensor([513.0], dtype=F64), table(g))) > float(a[0])


@given(t=st.lists(st.floats(0, 1e6), min_size=2, max_size=2), tau=st.sampled_from([1.0, 10.0]))
@settings(max_examples=200, deadline=None)
def test_soft_latency_is_a_max_up_to_a_tiny_margin(t, tau):
    platform = Diana(smooth_cycles=tau)
    cyc = torch.tensor([t], dtype=F64)
    hard = float(platform.latency_cycles(cyc, soft=False))
    soft = float(platform.latency_cycles(cyc, soft=True))
    assert hard == max(t)
    # softmax(t/τ)·t of two values lies in [max - 0.2785 τ, max]
    assert hard - 0.2785 * tau - 1e-9 <= soft <= hard + 1e-9 * max(1.0, hard)
    soft_overlap = float(platform._overlap(cyc, soft=True))
    assert min(t) - 1e-9 * max(1.0, hard) <= soft_overlap <= min(t) + 0.2785 * tau + 1e-9


def test_energy_uses_min_overlap_when_hard(diana):
    cyc = torch.tensor([[100.0, 40.0], [0.0, 50.0], [30.0, 0.0]], dtype=F64)
    e = diana.energy_mw_cycles(cyc, soft=False)
    expected = [42.39 * 40 + 24.96 * 60, 28.74 * 50, 24.96 * 30]
    assert e.tolist() == pytest.approx(expected, rel=1e-12)
    t_d, t_a = cyc[:, 0], cyc[:, 1]
    assert torch.allclose(energy_mw_cycles(t_d, t_a, torch.minimum(t_d, t_a)), e)
    assert torch.allclose(diana.busy_cycles(cyc), t_d + t_a)


def test_soft_cost_gradient_reaches_counts(diana):
    g = geom(16, 16, 3, 32)
    counts = torch.tensor([[8.0, 8.0]], dtype=F64, requires_grad=True)
    cost = diana.evaluate(counts, table(g), soft=True)
    (cost.total_latency_cycles + cost.total_energy_mw_cycles).backward()
    assert counts.grad.abs().sum() > 0


def test_platform_registry_and_arguments():
    assert isinstance(get_platform("diana"), Diana)
    with pytest.raises(ConfigError, match="unknown platform 'tpu'"):
        get_platform("tpu")
    with pytest.raises(ValueError, match="smooth_cycles"):
        Diana(smooth_cycles=0.0)
    d = get_platform()
    assert d.unit_names == ("digital", "analog")
    assert d.unit_index("analog") == 1
    with pytest.raises(KeyError, match="no unit 'npu'"):
        d.unit_index("npu")


def test_counts_from_assignment():
    counts = counts_from_assignment([torch.tensor([0, 1, 1]), torch.tensor([0, 0])], 2)
    assert counts.tolist() == [[1.0, 2.0], [2.0, 0.0]]
