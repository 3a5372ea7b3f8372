# SPDX-License-Identifier: Apache-2.0
"""The curve's expected costs and the three threshold choices on hand-built curves."""

from __future__ import annotations

import numpy as np
import pytest

from odimo.cascade.curve import (
    Curve,
    build_curve,
    choose_budget,
    choose_max_acc,
    choose_near_big,
)
from odimo.cascade.expected_cost import NetCost, expected_cost, worst_case_cost
from odimo.cascade.routing import PairOutputs


def _curve(acc: list[float], p_big: list[float]) -> Curve:
    p = np.array(p_big)
    little, big = NetCost(0.3, 8.0), NetCost(0.8, 20.0)
    return Curve(
        thresholds=np.linspace(0, 1, len(acc)),
        acc=np.array(acc),
        p_big=p,
        latency_ms=little.latency_ms + p * big.latency_ms,
        energy_uj=little.energy_uj + p * big.energy_uj,
    )


def test_expected_and_worst_case_cost_by_hand() -> None:
    # (1 - h)(C_l + p C_b) + C_lookup = 0.8 * (8 + 0.25 * 20) + 0.5 = 10.9
    assert float(expected_cost(0.25, 8.0, 20.0, hit_rate=0.2, lookup=0.5)) == pytest.approx(10.9)
    np.testing.assert_allclose(expected_cost(np.array([0.0, 1.0]), 8.0, 20.0), [8.0, 28.0])
    assert worst_case_cost(8.0, 20.0, 0.5) == 28.5
    with pytest.raises(ValueError):
        expected_cost(0.5, 1.0, 1.0, hit_rate=1.5)


def test_build_curve_attaches_both_costs() -> None:
    outputs = PairOutputs(
        conf=np.array([0.1, 0.5, 0.9, 0.95]),
        pred_little=np.array([0, 0, 1, 1]),
        pred_sent=np.array([1, 1, 1, 1]),
        labels=np.array([1, 0, 1, 1]),
    )
    curve = build_curve(outputs, np.array([0.0, 0.3, 0.6]), NetCost(1.0, 10.0), NetCost(2.0, 30.0))
    np.testing.assert_allclose(curve.p_big, [0.0, 0.25, 0.5])
    np.testing.assert_allclose(curve.acc, [0.75, 1.0, 0.75])
    np.testing.assert_allclose(curve.latency_ms, [1.0, 1.5, 2.0])
    np.testing.assert_allclose(curve.energy_uj, [10.0, 17.5, 25.0])


def test_max_acc_breaks_ties_toward_fewer_big_calls() -> None:
    curve = _curve([0.80, 0.85, 0.85, 0.85, 0.84], [0.0, 0.4, 0.2, 0.6, 1.0])
    assert choose_max_acc(curve) == 2


def test_budget_choice_and_infeasible_budget() -> None:
    curve = _curve([0.80, 0.83, 0.86, 0.87], [0.0, 0.2, 0.5, 1.0])
    # energy 8, 12, 18, 28 µJ: within 15 µJ the best is index 1
    assert choose_budget(curve, energy_uj=15.0) == 1
    # latency 0.3, 0.46, 0.7, 1.1 ms
    assert choose_budget(curve, latency_ms=0.75) == 2
    assert choose_budget(curve, latency_ms=0.75, energy_uj=15.0) == 1
    assert choose_budget(curve, energy_uj=5.0) is None


def test_near_big_is_the_cheapest_point_close_enough_to_big() -> None:
    curve = _curve([0.80, 0.856, 0.858, 0.87], [0.0, 0.2, 0.5, 1.0])
    assert choose_near_big(curve, acc_big=0.86, epsilon=0.003, cost_metric="energy_uj") == 2
    assert choose_near_big(curve, acc_big=0.86, epsilon=0.005, cost_metric="energy_uj") == 1
    assert choose_near_big(curve, acc_big=0.90, epsilon=0.003, cost_metric="latency_ms") is None
