# SPDX-License-Identifier: Apache-2.0
"""Collecting the finished jobs of a sweep dir."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import pytest

from odimo.analysis.sweep import collect_jobs, scan_sweep


def write_job(job_dir: Path, marker: str | None = "DONE", **metrics: Any) -> Path:
    """A job dir with a metrics.json (search job at λ=1e-6 unless overridden) and a marker."""
    job_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "kind": "search",
        "baseline": None,
        "reg": "latency",
        "strength": 1e-6,
        "model": "res20",
        "dataset": "digits",
        "seed": 0,
        "final/val/acc_hard": 0.9,
        "final/test/acc_hard": 0.88,
        "final/cost/latency_hard_ms": 1.5,
        "final/cost/latency_hard_cycles": 390000.0,
        "final/cost/energy_hard_uj": 12.0,
        "final/arch/analog_frac": 0.4,
    }
    data.update({key.replace("__", "/"): value for key, value in metrics.items()})
    (job_dir / "metrics.json").write_text(json.dumps(data))
    if marker:
        (job_dir / marker).write_text("")
    return job_dir


def test_finished_jobs_only(tmp_path: Path) -> None:
    write_job(tmp_path / "strength=1e-06")
    write_job(tmp_path / "running", marker=None, strength=1e-5)
    write_job(tmp_path / "failed", marker="FAILED", strength=1e-4)
    write_job(tmp_path / "base", kind="baseline", baseline="all_digital", strength=0.0)
    scan = scan_sweep(tmp_path)
    assert sorted(job["label"] for job in scan.jobs) == ["all_digital", "λ=1e-06"]
    assert scan.skip_counts() == {"failed": 1, "unfinished": 1}
    job = next(j for j in scan.jobs if j["kind"] == "search")
    assert job["final/val/acc_hard"] == 0.9 and job["missing"] == []
    assert Path(job["job_dir"]) == (tmp_path / "strength=1e-06").resolve()


def test_corrupt_and_non_object_json_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_job(tmp_path / "good")
    bad = write_job(tmp_path / "bad")
    (bad / "metrics.json").write_text('{"kind": "search", ')
    listy = write_job(tmp_path / "listy")
    (listy / "metrics.json").write_text("[1, 2]")
    with caplog.at_level(logging.WARNING):
        jobs = collect_jobs(tmp_path)
    assert len(jobs) == 1
    assert str(bad / "metrics.json") in caplog.text
    assert str(listy / "metrics.json") in caplog.text


def test_nested_dirs_and_depth_limit(tmp_path: Path) -> None:
    write_job(tmp_path / "reg=latency" / "strength=1e-07", strength=1e-7)
    write_job(tmp_path / "reg=power" / "strength=1e-07", reg="power", strength=1e-7)
    write_job(tmp_path / "a" / "b" / "c", strength=1.0)  # too deep
    outer = write_job(tmp_path / "outer", strength=2.0)
    write_job(outer / "finetune", strength=3.0)  # belongs to the outer job
    labels = sorted(job["label"] for job in collect_jobs(tmp_path))
    assert labels == ["λ=1e-07 (reg=latency)", "λ=1e-07 (reg=power)", "λ=2"]


def test_missing_and_bad_values_become_nan(tmp_path: Path) -> None:
    write_job(tmp_path / "j", final__val__acc_hard=None, final__cost__energy_hard_uj="lots")
    data = json.loads((tmp_path / "j" / "metrics.json").read_text())
    del data["final/test/acc_hard"]
    (tmp_path / "j" / "metrics.json").write_text(json.dumps(data))
    (job,) = collect_jobs(tmp_path)
    assert math.isnan(job["final/val/acc_hard"]) and math.isnan(job["final/test/acc_hard"])
    assert job["missing"] == ["final/val/acc_hard", "final/cost/energy_hard_uj"]


def test_newer_marker_wins(tmp_path: Path) -> None:
    job = write_job(tmp_path / "retried", marker="FAILED")
    (job / "DONE").write_text("")
    os.utime(job / "FAILED", (1_000, 1_000))
    assert len(collect_jobs(tmp_path)) == 1
    os.utime(job / "DONE", (500, 500))
    assert collect_jobs(tmp_path) == []


def test_sweep_dir_itself_is_a_job(tmp_path: Path) -> None:
    write_job(tmp_path, kind="baseline", baseline=None, strength=None)
    (job,) = collect_jobs(tmp_path)
    assert job["label"] == "baseline" and job["strength"] == 0.0


def test_empty_dir(tmp_path: Path) -> None:
    scan = scan_sweep(tmp_path)
    assert scan.jobs == [] and scan.skipped == []


def test_target_mode_jobs_are_labelled_by_their_target(tmp_path: Path) -> None:
    write_job(tmp_path / "t", **{"final__target__value": 0.4, "final__target__unit": "ms"})
    write_job(tmp_path / "l", strength=1e-5)
    labels = sorted(job["label"] for job in collect_jobs(tmp_path))
    assert labels == ["λ=1e-05", "≤0.4 ms"]
