# SPDX-License-Identifier: Apache-2.0
"""The cascade's accuracy-vs-cost curve over thresholds, and the three ways to pick one.

Thresholds are picked on the VALIDATION split and only then applied to test:
- `max_acc`: the most accurate threshold, ties toward fewer big calls (then the lower threshold);
- `budget`: the most accurate one whose expected latency and/or energy fits a budget;
- `near_big`: the cheapest one (in `cost_metric`) whose accuracy ≥ big's own − ε.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from odimo.cascade.expected_cost import COST_METRICS, FREE, NetCost, expected_cost
from odimo.cascade.routing import PairOutputs, sweep

CHOICES = ("max_acc", "budget", "near_big")


@dataclass(frozen=True)
class Curve:
    """Accuracy, share sent to big and expected costs of a cascade at each threshold."""

    thresholds: np.ndarray
    acc: np.ndarray
    p_big: np.ndarray
    latency_ms: np.ndarray
    energy_uj: np.ndarray

    def cost(self, metric: str) -> np.ndarray:
        """The expected-cost column `latency_ms` or `energy_uj`."""
        return getattr(self, metric)

    def row(self, i: int) -> dict[str, float]:
        """The curve's values at index `i` as plain floats."""
        return {
            "threshold": float(self.thresholds[i]),
            "acc": float(self.acc[i]),
            "p_big": float(self.p_big[i]),
            "latency_expected_ms": float(self.latency_ms[i]),
            "energy_expected_uj": float(self.energy_uj[i]),
        }


def build_curve(
    outputs: PairOutputs,
    thresholds: np.ndarray,
    little: NetCost,
    big: NetCost,
    hit_rate: float = 0.0,
    lookup: NetCost = FREE,
) -> Curve:
    """Sweep the thresholds and attach the expected latency and energy per input."""
    acc, p_big = sweep(outputs, thresholds)
    costs = {
        m: expected_cost(p_big, little.get(m), big.get(m), hit_rate, lookup.get(m))
        for m in COST_METRICS
    }
    return Curve(np.asarray(thresholds, dtype=np.float64), acc, p_big, **costs)


def _best(curve: Curve, feasible: np.ndarray) -> int | None:
    """Index of the most accurate feasible point; ties: fewer big calls, then lower threshold."""
    idx = np.flatnonzero(feasible)
    if idx.size == 0:
        return None
    # np.lexsort sorts by the LAST key first
    order = np.lexsort((curve.thresholds[idx], curve.p_big[idx], -curve.acc[idx]))
    return int(idx[order[0]])


def choose_max_acc(curve: Curve) -> int:
    """The most accurate threshold, ties toward fewer big calls."""
    index = _best(curve, np.ones_like(curve.acc, dtype=bool))
    assert index is not None  # a curve is never empty
    return index


def choose_budget(
    curve: Curve, latency_ms: float | None = None, energy_uj: float | None = None
) -> int | None:
    """The most accurate threshold within the budgets given (None: no limit); None if none fits."""
    feasible = np.ones_like(curve.acc, dtype=bool)
    if latency_ms is not None:
        feasible &= curve.latency_ms <= latency_ms
    if energy_uj is not None:
        feasible &= curve.energy_uj <= energy_uj
    return _best(curve, feasible)


def choose_near_big(curve: Curve, acc_big: float, epsilon: float, cost_metric: str) -> int | None:
    """The cheapest threshold with accuracy ≥ acc_big − ε (ties: more accurate, lower threshold);
    None when no threshold gets there."""
    idx = np.flatnonzero(curve.acc >= acc_big - epsilon - 1e-12)
    if idx.size == 0:
        return None
    cost = curve.cost(cost_metric)[idx]
    order = np.lexsort((curve.thresholds[idx], -curve.acc[idx], cost))
    return int(idx[order[0]])
