# SPDX-License-Identifier: Apache-2.0
"""Pareto fronts of accuracy vs cost: exact non-dominated filter, selection, budgets, hypervolume.

Pure numpy functions over parallel arrays `cost` (minimised: latency, energy) and `acc`
(maximised). A point with a NaN or infinite coordinate is invalid: it is never on a front, never
selected and never fits a budget. Callers pass VALIDATION accuracy here (it drives the choice);
test accuracy is only reported next to the choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike


def _as_pair(cost: ArrayLike, acc: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return `cost`, `acc` as 1-D float arrays of equal length and the mask of valid points."""
    cost = np.asarray(cost, dtype=float).reshape(-1)
    acc = np.asarray(acc, dtype=float).reshape(-1)
    if cost.shape != acc.shape:
        raise ValueError(f"cost and acc differ in length: {cost.size} vs {acc.size}")
    return cost, acc, np.isfinite(cost) & np.isfinite(acc)


def non_dominated(cost: ArrayLike, acc: ArrayLike) -> np.ndarray:
    """Mask of the points on the Pareto front (minimum cost, maximum accuracy).

    Point i is on the front iff no other point j has `cost[j] <= cost[i]` and
    `acc[j] >= acc[i]` with at least one of the two strict. Of several points with equal cost only
    the most accurate one can be on the front; of exact duplicates only the first index is kept.
    Invalid (NaN/inf) points are never on it. O(n log n): after sorting by (cost ascending,
    accuracy descending, index ascending) a point is on the front iff it is strictly more accurate
    than every point before it.

    Args:
        cost: cost of each point (any unit; only the order matters).
        acc: accuracy of each point.

    Returns:
        Boolean array, True for the points on the front, in the input order.
    """
    cost, acc, valid = _as_pair(cost, acc)
    mask = np.zeros(cost.size, dtype=bool)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return mask
    order = idx[np.lexsort((idx, -acc[idx], cost[idx]))]
    sorted_acc = acc[order]
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(sorted_acc)[:-1]))
    mask[order[sorted_acc > best_before]] = True
    return mask


def _log10_positive(values: np.ndarray, what: str) -> np.ndarray:
    """log10 of values that must be > 0 (costs on a log axis)."""
    if np.any(values <= 0):
        raise ValueError(f"{what} must be > 0 for a log scale, got {values[values <= 0][:3]}")
    return np.log10(values)


def select_representatives(
    cost: ArrayLike, acc: ArrayLike, front_mask: ArrayLike, k: int
) -> list[int]:
    """Pick k front points spread evenly in log cost.

    The targets are k log-spaced costs from the front's cheapest to its most expensive point (one
    target at their geometric mean when k == 1). Targets and front points are matched greedily by
    distance in log10(cost), closest pair first, so each target gets its nearest point unless a
    closer target already took it; the indices are distinct. Costs on the front must be > 0.

    Args:
        cost: cost of each point.
        acc: accuracy of each point (only used to drop invalid points).
        front_mask: output of `non_dominated` (any boolean mask works).
        k: number of representatives wanted (>= 0).

    Returns:
        Indices into the input arrays, sorted by cost; all front points when the front has <= k.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    cost, _, valid = _as_pair(cost, acc)
    front = np.flatnonzero(np.asarray(front_mask, dtype=bool).reshape(-1) & valid)
    front = front[np.lexsort((front, cost[front]))]
    if front.size <= k:
        return [int(i) for i in front]
    if k == 0:
        return []
    log_cost = _log10_positive(cost[front], "front costs")
    lo, hi = log_cost[0], log_cost[-1]
    targets = np.array([(lo + hi) / 2]) if k == 1 else np.linspace(lo, hi, k)
    dist = np.abs(targets[:, None] - log_cost[None, :])  # k x n
    # Stable sort on the flattened matrix: equal distances resolve to the earlier target, then to
    # the cheaper point.
    pairs = np.argsort(dist, axis=None, kind="stable")
    target_done = np.zeros(k, dtype=bool)
    point_used = np.zeros(front.size, dtype=bool)
    chosen: list[int] = []
    for flat in pairs:
        t, p = divmod(int(flat), front.size)
        if target_done[t] or point_used[p]:
            continue
        target_done[t] = point_used[p] = True
        chosen.append(p)
        if len(chosen) == k:
            break
    return [int(front[p]) for p in sorted(chosen)]


def best_under_budgets(
    cost: ArrayLike, acc: ArrayLike, budgets: Sequence[float] | ArrayLike
) -> list[dict]:
    """For each budget, the most accurate point whose cost fits (`cost <= budget`).

    Ties on accuracy go to the cheaper point, then to the lower index.

    Args:
        cost: cost of each point, in the unit of the budgets.
        acc: accuracy of each point.
        budgets: cost budgets.

    Returns:
        One dict per budget, in order: `budget`, `index`, `cost`, `acc`; the last three are None
        when no valid point fits the budget.
    """
    cost, acc, valid = _as_pair(cost, acc)
    idx = np.flatnonzero(valid)
    # Best first: accuracy descending, cost ascending, index ascending.
    ranked = idx[np.lexsort((idx, cost[idx], -acc[idx]))]
    out: list[dict] = []
    for budget in np.asarray(budgets, dtype=float).reshape(-1):
        fits = ranked[cost[ranked] <= budget]
        if fits.size == 0:
            out.append({"budget": float(budget), "index": None, "cost": None, "acc": None})
            continue
        best = int(fits[0])
        out.append(
            {
                "budget": float(budget),
                "index": best,
                "cost": float(cost[best]),
                "acc": float(acc[best]),
            }
        )
    return out


def hypervolume(cost: ArrayLike, acc: ArrayLike, ref_cost: float, ref_acc: float = 0.0) -> float:
    """Area dominated by the points, measured with cost on a log10 axis.

    The region is bounded by the reference point (`ref_cost`, a cost worse than all points, and
    `ref_acc`, an accuracy worse than all); its area is in decades of cost × accuracy. Points not
    strictly better than the reference in both coordinates contribute nothing, nor do dominated
    points. Only comparable between fronts measured against the same reference.

    Args:
        cost: cost of each point (> 0 where it is below `ref_cost`).
        acc: accuracy of each point.
        ref_cost: reference cost (> 0).
        ref_acc: reference accuracy.

    Returns:
        The hypervolume in log10(cost) units × accuracy units; 0.0 when no point counts.
    """
    cost, acc, valid = _as_pair(cost, acc)
    if not ref_cost > 0:
        raise ValueError(f"ref_cost must be > 0, got {ref_cost}")
    inside = valid & (cost < ref_cost) & (acc > ref_acc)
    if not inside.any():
        return 0.0
    cost, acc = cost[inside], acc[inside]
    front = non_dominated(cost, acc)
    order = np.argsort(cost[front], kind="stable")
    x = _log10_positive(cost[front][order], "costs")
    y = acc[front][order]  # increasing along the front
    widths = np.diff(np.append(x, np.log10(ref_cost)))
    return float(np.sum(widths * (y - ref_acc)))


def log_spaced(lo: float, hi: float, n: int) -> list[float]:
    """n log-spaced values from lo to hi (> 0), duplicates removed (lo == hi gives one value)."""
    if not (lo > 0 and hi >= lo and n >= 1):
        raise ValueError(f"need 0 < lo <= hi and n >= 1, got lo={lo}, hi={hi}, n={n}")
    if lo == hi:
        return [float(lo)]
    return [float(v) for v in np.unique(np.geomspace(lo, hi, n))]


def default_budgets(cost: np.ndarray, acc: np.ndarray, n: int = 5) -> list[float]:
    """`n` log-spaced budgets over the cost range of the rows with a finite cost and accuracy."""
    valid = np.isfinite(cost) & np.isfinite(acc)
    return log_spaced(cost[valid].min(), cost[valid].max(), n) if valid.any() else []
