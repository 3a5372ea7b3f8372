# SPDX-License-Identifier: Apache-2.0
"""Little networks worth having: from a characterized catalogue, the few networks far cheaper
than a big one that are the best for their cost.

A cascade saves nothing when its little network costs a large share of the big one (the
little runs on every input). Candidates are the catalogue rows whose cost on the platform is at
most big's / `ratio`; among them, the rows on the front of (cost ↓, quality ↑) within the top
`span` decades below that cap, and of those `k` spread evenly in log cost (the same spread the
Pareto selection uses). The quality column is what the catalogue knows: before training a
capacity proxy (`macs`), after `join_runs` the trained accuracy (e.g. `min_latency_val_acc`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from odimo.analysis.catalogue_fronts import check_columns, column
from odimo.analysis.pareto import non_dominated, select_representatives
from odimo.characterization.candidates import parse_key, train_commands
from odimo.errors import ConfigError

#: A catalogue cost column's unit suffix -> the cascade's cost metric it is comparable with.
METRIC_OF_SUFFIX = {"_uj": "energy_uj", "_ms": "latency_ms"}


def column_metric(cost_column: str) -> str:
    """`energy_uj` or `latency_ms`, from the column's unit suffix; ConfigError otherwise."""
    for suffix, metric in METRIC_OF_SUFFIX.items():
        if cost_column.endswith(suffix):
            return metric
    raise ConfigError(
        f"little.cost_column={cost_column!r} has no unit suffix _uj or _ms "
        "(e.g. diana_min_latency_uj)"
    )


def select_little(
    rows: Sequence[dict[str, Any]],
    *,
    cost_column: str,
    quality_column: str,
    name_column: str,
    big_cost: float,
    ratio: float = 10.0,
    span: float = 1.0,
    k: int = 4,
) -> list[dict[str, Any]]:
    """The chosen rows, cheapest first, each with `cost`, `quality` and `share_of_big`."""
    if not (math.isfinite(big_cost) and big_cost > 0):
        raise ConfigError(f"the big network's cost must be a positive number, got {big_cost!r}")
    if ratio < 1 or span <= 0 or k < 1:
        raise ConfigError(
            f"need little.ratio >= 1, little.span > 0, little.k >= 1 (got {ratio}, {span}, {k})"
        )
    check_columns(list(rows), [cost_column, quality_column, name_column], "little.catalogue")
    cost = column(list(rows), cost_column, positive=True)
    quality = column(list(rows), quality_column)
    cap = big_cost / ratio
    inside = (cost <= cap) & (cost >= cap / 10.0**span)
    cost_in = np.where(inside, cost, np.nan)
    front = non_dominated(cost_in, quality)
    chosen = select_representatives(cost_in, quality, front, k)
    return [
        {
            "name": rows[i][name_column],
            "cost": float(cost[i]),
            "quality": float(quality[i]),
            "share_of_big": float(cost[i] / big_cost),
        }
        for i in chosen
    ]


def little_commands(chosen: Sequence[dict[str, Any]], overrides: Sequence[str]) -> list[str]:
    """The `train.py` multiruns that train the chosen networks (sampled-network keys only)."""
    keys = [str(row["name"]) for row in chosen]
    bad = [k for k in keys if parse_key(k) is None]
    if bad:
        raise ConfigError(
            f"little.name_column must hold sampled-network keys <space>/<law>/<id>, got {bad[0]!r}"
        )
    return train_commands(keys, overrides)
