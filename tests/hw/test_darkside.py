# SPDX-License-Identifier: Apache-2.0
"""Darkside's cost model equals the reference's formulas, written here again with plain ints."""

from __future__ import annotations

import math

import pytest
import torch

from odimo.hw import Darkside, GeometryTable, LayerGeometry, get_platform


def ceil(a: int, n: int) -> int:
    return (a + n - 1) // n


def ref_cluster(g: LayerGeometry, k: int, im2col_at_zero: bool = False) -> int:
    """The doc's cluster formula (grouped convs: C_in/g inputs per output channel)."""
    fan = g.k_x * g.k_y * g.c_in // g.groups
    iters = ceil(g.o_y, 2) * ceil(g.o_x, 8)
    im2col = 2 * fan if (k > 0 or im2col_at_zero) else 0
    return iters * (im2col + ceil(k, 4) * (14 * ceil(fan, 4) + 15))


def ref_dwe(g: LayerGeometry, m: int) -> int:
    return ceil(m, 16) * (9 + 9 * g.o_x + 4 * g.o_x * g.o_y)


SLOTS = [
    LayerGeometry("s1", 32, 32, 3, 3, 1, 1, 8, 8, operator_choice=True),
    LayerGeometry("s2", 256, 256, 3, 3, 1, 1, 2, 2, operator_choice=True),
    LayerGeometry("s3", 512, 512, 3, 3, 1, 1, 1, 1, operator_choice=True),
    LayerGeometry("s4", 64, 64, 3, 3, 1, 1, 13, 7, operator_choice=True),
]


@pytest.mark.parametrize("g", SLOTS, ids=lambda g: g.name)
@pytest.mark.parametrize("share", [0.0, 0.3, 0.5, 1.0])
def test_unit_cycles_latency_and_energy_equal_the_formulas(g, share):
    platform = get_platform("darkside")
    k = round(share * g.c_out)
    cost = platform.evaluate(
        torch.tensor([[k, g.c_out - k]], dtype=torch.float64),
        GeometryTable([g], dtype=torch.float64),
    )
    t_c, t_d = ref_cluster(g, k), ref_dwe(g, g.c_out - k)
    assert cost.unit_cycles[0].tolist() == [t_c, t_d]
    latency = max(t_c, t_d)
    assert float(cost.latency_cycles[0]) == latency
    idle = (latency - t_c) + (latency - t_d)
    assert float(cost.energy_mw_cycles[0]) == pytest.approx(168 * t_c + 118 * t_d + 1.32 * idle)


def test_reference_options_soft_mean_and_im2col_at_zero():
    g = SLOTS[0]
    ref = Darkside(latency="soft_mean", im2col_at_zero=True)
    table = GeometryTable([g], dtype=torch.float64)
    cost = ref.evaluate(torch.tensor([[0.0, 32.0]], dtype=torch.float64), table)
    t_c, t_d = ref_cluster(g, 0, im2col_at_zero=True), ref_dwe(g, 32)
    assert t_c > 0 and cost.unit_cycles[0].tolist() == [t_c, t_d]
    w = [math.exp(t / 1e7) for t in (t_c, t_d)]
    mean = (w[0] * t_c + w[1] * t_d) / sum(w)
    assert float(cost.latency_cycles[0]) == pytest.approx(mean, rel=1e-12)
    assert abs(mean - (t_c + t_d) / 2) < 0.01 * max(t_c, t_d)  # "almost the mean"


def test_count_choice_layers_costs_only_the_slots():
    fixed = LayerGeometry("pw", 32, 64, 1, 1, 1, 1, 8, 8)
    table = GeometryTable([SLOTS[0], fixed], dtype=torch.float64)
    counts = torch.tensor([[32.0, 0.0], [64.0, 0.0]], dtype=torch.float64)
    every = get_platform("darkside").evaluate(counts, table)
    slots = Darkside(count="choice_layers").evaluate(counts, table)
    assert float(every.latency_cycles[1]) == ref_cluster(fixed, 64)
    assert slots.latency_cycles.tolist() == [ref_cluster(SLOTS[0], 32), 0.0]


def test_units_roles_and_which_layers_the_dwe_may_run():
    p = get_platform("darkside")
    assert p.unit_names == ("cluster", "dwe")
    assert p.precise_unit_index() == 0 and p.cheap_unit_index() == 1
    dw = LayerGeometry("dw", 16, 16, 3, 3, 2, 16, 4, 4)
    conv = LayerGeometry("c", 16, 16, 3, 3, 1, 1, 4, 4)
    pw = LayerGeometry("pw", 16, 16, 1, 1, 1, 1, 4, 4)
    assert p.allowed_units(SLOTS[0]) == [True, True]
    assert p.allowed_units(dw) == [True, True]  # a true depthwise layer
    assert p.allowed_units(conv) == [True, False]  # a plain conv is not a depthwise filter
    assert p.allowed_units(pw) == [True, False]
    assert p.fixed_unit_index(dw) == 1 and p.fixed_unit_index(pw) == 0
    assert p.activation_bits == 8


def test_soft_cost_gives_every_unit_a_gradient_at_an_even_split():
    """The search must be able to move channels both ways: at a mid split both counts get a
    non-zero latency gradient of opposite effect (no zero-gradient start)."""
    p = get_platform("darkside")
    g = SLOTS[1]
    counts = torch.tensor([[128.0, 128.0]], dtype=torch.float64, requires_grad=True)
    cost = p.evaluate(counts, GeometryTable([g], dtype=torch.float64), soft=True)
    cost.energy_mw_cycles.sum().backward()
    assert counts.grad[0, 0] > 0 and counts.grad[0, 1] > 0
