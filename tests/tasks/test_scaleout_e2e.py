# SPDX-License-Identifier: Apache-2.0
"""Scaling out end to end: sweeps through the joblib and submitit launchers, two identical
sweeps at once, and a 2-process DDP run next to a 1-process one (CPU, gloo)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from odimo.io import job_lock
from tests.tasks.helpers import DIGITS_8X8, REPO

#: Tiny jobs: 128 training images (2 batches), eager quantizer kernels (no compile time).
TINY = [
    "debug=default",
    DIGITS_8X8,
    "dataset.datamodule.limit_train=128",
    "dataset.datamodule.eval_batch_size=512",
    "fused_quant=false",
    "callbacks.plots=false",
]
GRID = "strength=0,1e-5,1e-4,1e-3"


def _popen(tmp_path, *args: str, out: Path | None = None) -> subprocess.Popen:
    """train.py in a subprocess; its stdout goes to `out` (a file to watch) or a pipe."""
    flags = [a for a in args if a == "-m"]
    rest = [a for a in args if a != "-m"]
    return subprocess.Popen(
        [sys.executable, "train.py", *flags, *TINY, f"paths.output_dir={tmp_path}", *rest],
        cwd=REPO,
        stdout=out.open("w") if out else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _finish(proc: subprocess.Popen, timeout: int = 900) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def _ran_once(sweep_dir, jobs: int) -> None:
    """Every job finished, and each phase trained in exactly one attempt."""
    done = sorted(p.parent for p in sweep_dir.glob("*/DONE"))
    assert len(done) == jobs, [p.name for p in sweep_dir.iterdir()]
    for job in done:
        for phase in ("search", "finetune"):
            assert sorted(p.name for p in (job / phase / "csv").iterdir()) == ["version_0"], job
        assert json.loads((job / "DONE").read_text())["fingerprint"]


def _warmup_trained_once(tmp_path) -> None:
    caches = list((tmp_path / "cache" / "warmup").iterdir())
    assert len(caches) == 1
    assert [p.name for p in (caches[0] / "csv").iterdir()] == ["version_0"]


@pytest.mark.parametrize(
    "launcher",
    [
        ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"],
        # the same locks, jobs and Pareto checks as joblib in CI; its config composes in
        # tests/test_configs.py and the job lock across processes is tests/io/test_files.py's
        pytest.param(
            ["hydra/launcher=local", "hydra.sweeper.max_batch_size=2"], marks=pytest.mark.slow
        ),
    ],
    ids=["joblib", "submitit_local"],
)
def test_sweep_through_a_launcher_then_pareto(tmp_path, launcher):
    """4 jobs, 2 at a time: the shared warm-up is trained once (the others wait on its lock),
    every job runs once, and the Pareto task reads the sweep."""
    _finish(_popen(tmp_path, "-m", *launcher, "sweep_name=l", GRID))
    sweep_dir = tmp_path / "sweeps" / "l"
    _ran_once(sweep_dir, 4)
    _warmup_trained_once(tmp_path)
    pareto = subprocess.run(
        [sys.executable, "tasks/pareto.py", f"sweep_dir={sweep_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pareto.returncode == 0, pareto.stderr[-2000:]
    rows = {float(r["strength"]): r for r in csv.DictReader((sweep_dir / "pareto.csv").open())}
    assert sorted(rows) == [0.0, 1e-5, 1e-4, 1e-3]
    # the cost term works: the strongest λ costs less than λ = 0 from the same warm-up and seed
    assert float(rows[1e-3]["latency_ms"]) < float(rows[0.0]["latency_ms"])


def _wait_for_text(path: Path, text: str, procs: list[subprocess.Popen]) -> None:
    """Block until `path` holds `text` (the event), failing if a process ends first."""
    deadline = time.time() + 600  # a safety net only: the event comes within seconds
    while text not in (path.read_text() if path.is_file() else ""):
        assert all(p.poll() is None for p in procs), f"a sweep ended before {text!r}"
        assert time.time() < deadline, f"no {text!r} in {path}"
        time.sleep(0.1)


def test_two_identical_sweeps_at_once_run_every_job_once(tmp_path):
    """Both commands meet on a running job by construction, not by timing: the test holds the
    first job's lock until both commands report waiting for it, then lets them go."""
    args = (
        "-m",
        "sweep_name=twice",
        "strength=0,1e-4,1e-3",
        "hydra.sweep.subdir=job${hydra.job.num}",
    )
    sweep_dir = tmp_path / "sweeps" / "twice"
    outs = [tmp_path / "first.out", tmp_path / "second.out"]
    waiting = f"{sweep_dir / 'job0'} is being run by another process"
    with job_lock(sweep_dir / "job0"):
        procs = [_popen(tmp_path, *args, out=out) for out in outs]
        for out in outs:
            _wait_for_text(out, waiting, procs)
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    _ran_once(sweep_dir, 3)
    _warmup_trained_once(tmp_path)
    texts = [out.read_text() for out in outs]
    assert all(text.count(waiting) >= 1 for text in texts)
    # each job was run by one command and found finished by the other
    assert sum(text.count("is done already; skipping") for text in texts) == 3


def _ddp_run(tmp_path, name: str, *trainer: str) -> dict:
    run_dir = tmp_path / name
    _finish(
        _popen(
            tmp_path / f"out_{name}",
            *trainer,
            "strength=1e-4",
            f"hydra.run.dir={run_dir}",
        )
    )
    return json.loads((run_dir / "metrics.json").read_text())


def test_ddp_two_processes_write_once_in_the_same_formats(tmp_path):
    one = _ddp_run(tmp_path, "one", "trainer=cpu")
    two = _ddp_run(tmp_path, "two", "trainer=ddp_cpu", "trainer.devices=2")
    assert set(one) == set(two) and two["kind"] == "search"
    a, b = tmp_path / "one", tmp_path / "two"

    def outputs(run_dir):  # Hydra's per-process log files aside
        return {
            p.relative_to(run_dir).as_posix()
            for p in run_dir.rglob("*")
            if p.is_file() and p.suffix != ".log"
        }

    assert outputs(a) == outputs(b)  # no extra or missing file (nothing from rank 1)
    for run_dir in (a, b):
        rows = list(csv.DictReader((run_dir / "search" / "layers.csv").open()))
        assert len(rows) == 22  # one epoch x 22 layers, no duplicate rows from rank 1
        mapping = json.loads((run_dir / "mapping.json").read_text())
        assert mapping["format"] == "odimo.mapping/1" and len(mapping["layers"]) == 22
        logged = list(
            csv.DictReader(next((run_dir / "search" / "csv").glob("*/metrics.csv")).open())
        )
        assert sum(1 for r in logged if r.get("val/acc_hard")) == 1  # one validation row
