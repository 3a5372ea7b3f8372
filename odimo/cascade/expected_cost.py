# SPDX-License-Identifier: Apache-2.0
"""Expected cost of a two-network cascade on a platform, per input.

expected = (1 − h)·(C_little + p_big·C_big) + C_lookup, worst case = C_little + C_big (+ lookup),
for any additive per-inference cost (DIANA latency in ms, energy in µJ). `h` is the share of
inputs answered by the memory (no network runs), `p_big` the share of the others sent to big.
What this leaves out is listed in docs/cascade.md (weight reloads of the analog array, the
host's scoring time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from odimo.errors import ConfigError


@dataclass(frozen=True)
class NetCost:
    """Cost of one inference of one network; NaN where unknown."""

    latency_ms: float
    energy_uj: float

    def get(self, metric: str) -> float:
        """The cost named `latency_ms` or `energy_uj`."""
        if metric not in COST_METRICS:
            raise ConfigError(f"unknown cost metric {metric!r} (choose from: {COST_METRICS})")
        return float(getattr(self, metric))


#: The additive costs a cascade reports, in their units.
COST_METRICS = ("latency_ms", "energy_uj")
#: A cost of nothing (no memory lookup, or no second network).
FREE = NetCost(0.0, 0.0)


def expected_cost(
    p_big: np.ndarray | float,
    little: float,
    big: float,
    hit_rate: float = 0.0,
    lookup: float = 0.0,
) -> np.ndarray:
    """Expected cost per input; `p_big` may be an array (one value per threshold)."""
    if not 0.0 <= hit_rate <= 1.0:
        raise ValueError(f"hit_rate must lie in [0, 1], got {hit_rate}")
    p_big = np.asarray(p_big, dtype=np.float64)
    return (1.0 - hit_rate) * (little + p_big * big) + lookup


def worst_case_cost(little: float, big: float, lookup: float = 0.0) -> float:
    """Cost of an input that misses the memory and is sent to the big network."""
    return float(little + big + lookup)
