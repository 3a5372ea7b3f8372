# SPDX-License-Identifier: Apache-2.0
"""Pareto filter, representative selection, budgets and hypervolume."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odimo.analysis.pareto import (
    best_under_budgets,
    hypervolume,
    log_spaced,
    non_dominated,
    select_representatives,
)

NAN = math.nan


def brute_front(cost: list[float], acc: list[float]) -> list[bool]:
    """O(n²) reference: not dominated by any point, and no earlier exact duplicate."""
    n = len(cost)
    out = []
    for i in range(n):
        if not (math.isfinite(cost[i]) and math.isfinite(acc[i])):
            out.append(False)
            continue
        on = True
        for j in range(n):
            if j == i or not (math.isfinite(cost[j]) and math.isfinite(acc[j])):
                continue
            dominates = cost[j] <= cost[i] and acc[j] >= acc[i]
            strict = cost[j] < cost[i] or acc[j] > acc[i]
            if (dominates and strict) or (j < i and cost[j] == cost[i] and acc[j] == acc[i]):
                on = False
                break
        out.append(on)
    return out


class TestNonDominated:
    def test_staircase_all_on_front(self) -> None:
        mask = non_dominated([1, 2, 4, 8], [0.5, 0.6, 0.7, 0.8])
        assert mask.tolist() == [True, True, True, True]

    def test_tie_on_cost_keeps_more_accurate(self) -> None:
        mask = non_dominated([2, 2, 1], [0.6, 0.7, 0.5])
        assert mask.tolist() == [False, True, True]

    def test_tie_on_acc_keeps_cheaper(self) -> None:
        assert non_dominated([3, 2], [0.7, 0.7]).tolist() == [False, True]

    def test_exact_duplicates_keep_first(self) -> None:
        mask = non_dominated([5, 1, 5, 5], [0.9, 0.2, 0.9, 0.9])
        assert mask.tolist() == [True, True, False, False]

    def test_one_point(self) -> None:
        assert non_dominated([3.0], [0.1]).tolist() == [True]

    def test_empty(self) -> None:
        assert non_dominated([], []).tolist() == []

    def test_all_dominated_by_one(self) -> None:
        mask = non_dominated([5, 1, 3, 2, 9], [0.1, 0.95, 0.5, 0.9, 0.2])
        assert mask.tolist() == [False, True, False, False, False]

    def test_nan_never_on_front(self) -> None:
        mask = non_dominated([1, NAN, 2, 3], [NAN, 0.99, 0.5, math.inf])
        assert mask.tolist() == [False, False, True, False]

    def test_all_nan(self) -> None:
        assert not non_dominated([NAN, NAN], [0.1, NAN]).any()

    def test_length_mismatch(self) -> None:
        with pytest.raises(ValueError, match="differ"):
            non_dominated([1, 2], [0.5])

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.one_of(st.integers(0, 5).map(float), st.just(NAN)),
                st.one_of(st.integers(0, 5).map(float), st.just(NAN)),
            ),
            max_size=25,
        )
    )
    def test_matches_brute_force(self, points: list[tuple[float, float]]) -> None:
        cost = [c for c, _ in points]
        acc = [a for _, a in points]
        assert non_dominated(cost, acc).tolist() == brute_front(cost, acc)


class TestSelectRepresentatives:
    def test_front_smaller_than_k_returns_all_by_cost(self) -> None:
        cost = np.array([10.0, 1.0, 5.0, 3.0])
        acc = np.array([0.9, 0.5, 0.4, 0.7])
        front = non_dominated(cost, acc)
        assert select_representatives(cost, acc, front, 5) == [1, 3, 0]

    def test_nearest_to_log_targets(self) -> None:
        # Front at 1, 2, 10, 11, 90, 100: targets for k=3 are 1, 10, 100.
        cost = np.array([100.0, 1.0, 11.0, 2.0, 10.0, 90.0])
        acc = np.array([0.9, 0.1, 0.5, 0.2, 0.4, 0.8])
        front = non_dominated(cost, acc)
        assert front.all()
        assert select_representatives(cost, acc, front, 3) == [1, 4, 0]

    def test_distinct_when_targets_share_a_nearest_point(self) -> None:
        # Front at 1, 1000 and 1001..1003: targets 1, 10, 100, 1000 would all like 1 or 1000.
        cost = np.array([1.0, 1000.0, 1001.0, 1002.0, 1003.0])
        acc = np.array([0.1, 0.5, 0.6, 0.7, 0.8])
        chosen = select_representatives(cost, acc, non_dominated(cost, acc), 4)
        assert len(chosen) == len(set(chosen)) == 4
        assert chosen == sorted(chosen, key=lambda i: cost[i])
        assert 0 in chosen and 4 in chosen

    def test_only_front_points_and_k_one(self) -> None:
        cost = np.array([1.0, 10.0, 100.0, 5.0])
        acc = np.array([0.1, 0.5, 0.9, 0.05])
        front = non_dominated(cost, acc)
        assert select_representatives(cost, acc, front, 1) == [1]
        assert 3 not in select_representatives(cost, acc, front, 3)

    def test_k_zero_and_negative(self) -> None:
        assert select_representatives([1.0, 2.0], [0.1, 0.2], [True, True], 0) == []
        with pytest.raises(ValueError):
            select_representatives([1.0], [0.1], [True], -1)


class TestBestUnderBudgets:
    def test_none_fits(self) -> None:
        (hit,) = best_under_budgets([5.0, 6.0], [0.5, 0.6], [1.0])
        assert hit == {"budget": 1.0, "index": None, "cost": None, "acc": None}

    def test_most_accurate_that_fits_tie_to_cheaper(self) -> None:
        cost = [4.0, 2.0, 3.0, 10.0, NAN]
        acc = [0.8, 0.8, 0.7, 0.95, 0.99]
        hits = best_under_budgets(cost, acc, [3.0, 4.0, 100.0])
        assert [h["index"] for h in hits] == [1, 1, 3]
        assert hits[0]["cost"] == 2.0 and hits[0]["acc"] == 0.8

    def test_budget_is_inclusive(self) -> None:
        assert best_under_budgets([2.0], [0.5], [2.0])[0]["index"] == 0


class TestHypervolume:
    def test_single_rectangle(self) -> None:
        # One decade wide (10 -> 100), 0.5 high.
        assert hypervolume([10.0], [0.5], ref_cost=100.0) == pytest.approx(0.5)

    def test_staircase_by_hand(self) -> None:
        # [0, 1) decade at 0.4, [1, 2) at 0.8, ref_acc 0.2 -> 0.2 + 0.6.
        hv = hypervolume([1.0, 10.0], [0.4, 0.8], ref_cost=100.0, ref_acc=0.2)
        assert hv == pytest.approx(0.8)

    def test_dominated_point_changes_nothing(self) -> None:
        base = hypervolume([1.0, 10.0], [0.4, 0.8], ref_cost=100.0)
        more = hypervolume([1.0, 10.0, 20.0, 10.0], [0.4, 0.8, 0.5, 0.8], ref_cost=100.0)
        assert more == pytest.approx(base)

    def test_points_beyond_reference_contribute_nothing(self) -> None:
        assert hypervolume([200.0, 5.0], [0.9, -0.1], ref_cost=100.0) == 0.0
        assert hypervolume([], [], ref_cost=1.0) == 0.0

    def test_bad_reference(self) -> None:
        with pytest.raises(ValueError):
            hypervolume([1.0], [0.5], ref_cost=0.0)


def test_log_spaced() -> None:
    assert log_spaced(1.0, 100.0, 3) == pytest.approx([1.0, 10.0, 100.0])
    assert log_spaced(5.0, 5.0, 5) == [5.0]


# Plots (odimo.analysis.plots): smoke tests of the per-run figures and of an empty front.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_per_run_plots_and_empty_front(tmp_path: Path) -> None:
    from odimo.analysis.plots import plot_front, plot_mapping_bars, plot_unit_heatmap

    names = ["conv1", "layer1.conv1", "layer1.conv2", "fc"]
    written = [
        plot_mapping_bars([(n, 16 - i, i) for i, n in enumerate(names)], tmp_path / "bars.png"),
        plot_mapping_bars({"conv1": (3, 5)}, tmp_path / "bars_map.png", title="mapping"),
        plot_mapping_bars(
            [("c", 1, 2, 3)], tmp_path / "bars3.png", units=("digital", "analog", "npu")
        ),
        plot_unit_heatmap(
            [1, 2, 3], names, np.linspace(0, 1, 12).reshape(3, 4), tmp_path / "sub" / "heat.png"
        ),
        plot_front(
            [{"kind": "search", "val_acc_hard": NAN, "c": 1.0}],
            "c",
            "latency (ms)",
            tmp_path / "empty.png",
        ),
    ]
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000, path
