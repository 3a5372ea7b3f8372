# SPDX-License-Identifier: Apache-2.0
"""Sweep job folders: named by their overrides, hashed when the name would be too long."""

from __future__ import annotations

import os
import subprocess
import sys

from odimo.pipeline.job import MAX_JOB_DIR_BYTES, job_dir_name
from tests.tasks.helpers import DIGITS_8X8, REPO


def test_short_names_are_the_overrides_and_long_ones_a_stable_distinct_hash():
    short = "strength=1e-05"
    assert job_dir_name(short) == short
    a = ",".join(f"key{i}=value{i}" for i in range(40))
    b = a.replace("value39", "value38")
    for name in (a, b):
        assert len(job_dir_name(name).encode()) <= MAX_JOB_DIR_BYTES
        assert job_dir_name(name).startswith(name[:100])
    assert job_dir_name(a) == job_dir_name(a) != job_dir_name(b)
    assert len(job_dir_name("é" * 150).encode()) <= MAX_JOB_DIR_BYTES  # cut on a character


def test_a_sweep_with_long_overrides_runs_in_hashed_folders(tmp_path):
    """Overrides that add up to more than 255 bytes (a file system's limit) used to crash."""
    long = [
        "debug=default",
        DIGITS_8X8,
        "phases=[warmup]",
        "dataset.datamodule.limit_train=128",
        "dataset.datamodule.eval_batch_size=512",
        "warmup.optim.weights.lr=0.05",
        "warmup.optim.weights.momentum=0.9",
        "warmup.optim.weights.weight_decay=0.0005",
        "search.temperature.initial=1.0",
        "callbacks.plots=false",
        "fused_quant=false",
    ]
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", *long, "seed=0,1", f"paths.output_dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = sorted(p for p in (tmp_path / "sweeps" / "default").iterdir() if p.is_dir())
    assert len(jobs) == 2
    for job in jobs:
        assert "~" in job.name and len(job.name.encode()) <= MAX_JOB_DIR_BYTES
        assert (job / "DONE").is_file()
