# SPDX-License-Identifier: Apache-2.0
"""Front refinement: gap ranking, target placement, hypervolume gain, sweep reading, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from odimo.analysis.pareto import hypervolume
from odimo.analysis.refine import (
    front_gaps,
    interpolated_acc,
    marginal_gain,
    plan_refinement,
    propose_targets,
)
from odimo.errors import ConfigError
from tests.analysis.test_sweep import write_job

#: A front of 4 points (cost ms, val acc) plus one dominated point (0.5 ms, 0.6).
COST = [0.2, 0.25, 0.4, 0.8, 0.5]
ACC = [0.70, 0.72, 0.85, 0.90, 0.60]


def test_gaps_are_the_staircase_rectangles_ranked_by_area() -> None:
    gaps = front_gaps(COST, ACC)
    # independent: consecutive front points (the dominated one left out), area in decades × acc
    pairs = [((0.2, 0.70), (0.25, 0.72)), ((0.25, 0.72), (0.4, 0.85)), ((0.4, 0.85), (0.8, 0.9))]
    areas = {(a[0], b[0]): math.log10(b[0] / a[0]) * (b[1] - a[1]) for a, b in pairs}
    assert [(g.lo_cost, g.hi_cost) for g in gaps] == [(0.25, 0.4), (0.4, 0.8), (0.2, 0.25)]
    for g in gaps:
        assert g.area == pytest.approx(areas[(g.lo_cost, g.hi_cost)])


def test_one_point_per_gap_at_the_geometric_mean_of_the_largest_gaps() -> None:
    proposals = propose_targets(COST, ACC, 2)
    assert [p.target for p in proposals] == pytest.approx([math.sqrt(0.25 * 0.4), math.sqrt(0.32)])


def test_greedy_gives_a_big_gap_two_points_at_thirds() -> None:
    """Gap A (area 0.3) against gap B (area 0.09): A's second point adds 0.3/12 = 0.025, more
    than B's first (0.09/4 = 0.0225), so A gets both points, at thirds of its log-cost range."""
    cost = [1.0, 10.0, 10.0 ** (1 + 0.09 / 0.1)]  # A: 1 decade × 0.3; B: 0.9 decade × 0.1
    acc = [0.5, 0.8, 0.9]
    assert marginal_gain(0.3, 1) > marginal_gain(0.09, 0)
    targets = [p.target for p in propose_targets(cost, acc, 2)]
    assert targets == pytest.approx([10 ** (1 / 3), 10 ** (2 / 3)])


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_proposed_points_on_the_line_raise_the_hypervolume_by_the_expected_gain(n: int) -> None:
    ref = 2 * max(COST)
    before = hypervolume(COST, ACC, ref)
    proposals = propose_targets(COST, ACC, n)
    new_cost = [p.target for p in proposals]
    new_acc = [interpolated_acc(p.gap, p.target) for p in proposals]
    after = hypervolume(COST + new_cost, ACC + new_acc, ref)
    assert after > before
    assert after - before == pytest.approx(sum(p.expected_gain for p in proposals))


def test_no_other_placement_in_the_gap_adds_more() -> None:
    """On the line, the geometric mean beats any other cost of the gap (0.25-0.4 ms)."""
    ref = 2 * max(COST)
    (best,) = propose_targets(COST, ACC, 1)
    gain = hypervolume(COST + [best.target], ACC + [interpolated_acc(best.gap, best.target)], ref)
    for c in np.geomspace(0.2501, 0.3999, 25):
        other = hypervolume(COST + [c], ACC + [interpolated_acc(best.gap, c)], ref)
        assert other <= gain + 1e-12


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="n must be"):
        propose_targets(COST, ACC, 0)
    with pytest.raises(ValueError, match="no gap"):
        propose_targets([0.3, 0.4], [0.9, 0.8], 1)  # one front point


def _sweep(tmp_path: Path, overrides: list[str], reg: str = "latency") -> Path:
    sweep = tmp_path / "sweep"
    for i, (c, a) in enumerate(zip(COST, ACC)):
        job = write_job(sweep / f"strength={i}", **{
            "final__cost__latency_hard_ms": c, "final__val__acc_hard": a, "reg": reg,
        })  # fmt: skip
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(
            yaml.safe_dump([*overrides, f"strength={i}"])
        )
    return sweep


def test_plan_reads_the_sweep_and_keeps_its_overrides(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, ["dataset=fashion_mnist", "search.epochs=3"])
    plan = plan_refinement(sweep, 2)
    assert plan.objective == "latency" and plan.jobs == 5
    assert plan.hypervolume == pytest.approx(hypervolume(COST, ACC, 1.6))
    targets = ",".join(f"{t:.4g}" for t in (math.sqrt(0.1), math.sqrt(0.32)))
    assert plan.argv == [
        "-m",
        "dataset=fashion_mnist",
        "search.epochs=3",
        f"reg.target_ms={targets}",
        f"hydra.sweep.dir={sweep.resolve()}",
    ]


def test_a_sweep_preset_is_pinned_to_one_strength(tmp_path: Path) -> None:
    plan = plan_refinement(_sweep(tmp_path, ["sweep=digits_latency"]), 1)
    assert plan.argv[1:3] == ["sweep=digits_latency", "strength=0"]


def test_bad_sweeps_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        plan_refinement(tmp_path / "nowhere", 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no finished search job"):
        plan_refinement(tmp_path / "empty", 1)
    sweep = _sweep(tmp_path, [])
    with pytest.raises(ConfigError, match="n must be >= 1"):
        plan_refinement(sweep, 0)
    with pytest.raises(ConfigError, match="needs reg=power"):
        plan_refinement(sweep, 1, "energy")


def test_launch_runs_train_py_with_the_arguments(tmp_path: Path) -> None:
    """`run=true` hands the argv to train.py unchanged (a stand-in records what it got)."""
    from odimo.analysis.refine import launch

    record = tmp_path / "argv.txt"
    fake = tmp_path / "train.py"
    fake.write_text(f"import sys; open({str(record)!r}, 'w').write(repr(sys.argv[1:]))\n")
    argv = ["-m", "reg.target_ms=0.3,0.5", f"hydra.sweep.dir={tmp_path}"]
    assert launch(argv, fake) == 0
    assert record.read_text() == repr(argv)
