# SPDX-License-Identifier: Apache-2.0
"""Sweep-mode Pareto analysis on a hand-made list of jobs (no files, no task)."""

from __future__ import annotations

import math
from pathlib import Path

from odimo.analysis.sweep_fronts import CSV_COLUMNS, analyse_sweep, job_rows, sweep_selection


def _job(label, kind, strength, val, lat, energy, sweep=Path("/s")):
    return {
        "label": label,
        "kind": kind,
        "baseline": "all_digital" if kind == "baseline" else None,
        "reg": "latency",
        "strength": strength,
        "final/val/acc_hard": val,
        "final/test/acc_hard": val - 0.01,
        "final/cost/latency_hard_ms": lat,
        "final/cost/latency_hard_cycles": lat * 260e3,
        "final/cost/energy_hard_uj": energy,
        "final/arch/cheap_frac": 0.5,
        "job_dir": str(sweep / label),
    }


def test_rows_fronts_and_selection():
    jobs = [
        _job("b", "baseline", math.nan, 0.95, 0.30, 3.0),
        _job("s2", "search", 1e-5, 0.90, 0.10, 1.0),
        _job("s1", "search", 1e-6, 0.94, 0.20, 4.0),
        _job("bad", "search", 1e-7, 0.80, 0.25, 0.0),  # dominated on latency; energy 0 -> NaN
    ]
    rows = job_rows(jobs, Path("/s"))
    assert [r["label"] for r in rows] == ["bad", "s1", "s2", "b"]  # search first, by strength
    assert set(rows[0]) == set(CSV_COLUMNS) and rows[0]["job_dir"] == "bad"
    assert math.isnan(rows[0]["energy_uj"])
    budgets = {"latency": [0.15, 0.35], "energy": None}
    fronts = analyse_sweep(rows, 2, budgets, {"latency": 1.0, "energy": None})
    assert [r["on_front_latency"] for r in rows] == [False, True, True, True]
    # energy: s2 (1.0, 0.90) and b (3.0, 0.95) are on it; s1 (4.0, 0.94) is dominated by b
    assert [r["on_front_energy"] for r in rows] == [False, False, True, True]
    assert [b["label"] for b in fronts["latency"]["budgets"]] == ["s2", "b"]
    assert sum(r["selected"] for r in rows) == len(fronts["latency"]["selected"]) == 2
    selection = sweep_selection(rows, fronts, 2)
    assert selection["k"] == 2 and selection["hypervolume_ref"]["latency_ms"] == 1.0
    assert all("selected" not in r for r in selection["latency"])
    assert selection["hypervolume_ref"]["energy_uj"] == 2.0 * 4.0  # default: 2 × largest cost
