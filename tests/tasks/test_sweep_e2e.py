# SPDX-License-Identifier: Apache-2.0
"""End to end through the entry points: train.py single run and multirun, then tasks/pareto.py.

These run the real scripts in subprocesses with `sys.executable`, on the embedded digits data.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.tasks.helpers import DIGITS_8X8, REPO

TINY = ["debug=default", DIGITS_8X8, "dataset.datamodule.eval_batch_size=512"]


def _train(tmp_path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    flags = [a for a in args if a == "-m"]  # Hydra's flags must precede the overrides
    args = tuple(a for a in args if a != "-m")
    other_dataset = any(a.startswith("dataset=") for a in args)
    tiny = [t for t in TINY if not (other_dataset and t == DIGITS_8X8)]
    return subprocess.run(
        [sys.executable, "train.py", *flags, *tiny, f"paths.output_dir={tmp_path}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_train_py_single_run_writes_metrics(tmp_path):
    proc = _train(tmp_path, "strength=1e-5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["strength"] == 1e-5 and metrics["kind"] == "search"
    assert 0 <= metrics["final/test/acc_hard"] <= 1
    assert "final/test/acc_hard" in proc.stdout  # the printed summary


def test_train_py_errors_are_one_line_and_nonzero(tmp_path):
    for args, needle in [
        (["model=foo"], "unknown model 'foo'"),
        (["strength=abc"], "strength must be a number"),
        (["search.epochs=-3"], "search.epochs must be an integer >= 1, got -3"),
        (["dataset=cifar10", f"dataset.datamodule.root={tmp_path}/none"], f"{tmp_path}/none"),
    ]:
        proc = _train(tmp_path, *args, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and needle in lines[0], proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "sig",
    [
        signal.SIGTERM,
        # the same sweep, resume and Pareto path as SIGTERM; a SIGKILLed writer is tested by
        # tests/io/test_files.py and an exact resume in-process by tests/tasks/test_train_task.py
        pytest.param(signal.SIGKILL, marks=pytest.mark.slow),
    ],
    ids=["sigterm", "sigkill"],
)
def test_sweep_then_pareto_and_resume_after_kill(tmp_path, sig):
    """SIGTERM (what a scheduler sends) stops the whole sweep, leaving no FAILED marker; after
    SIGKILL nothing is written at all. Either way the same command finishes the sweep."""
    sweep = ["-m", "sweep_name=t", "strength=0,1e-4,1e-3"]
    # start the sweep and stop it once the first job has finished
    proc = subprocess.Popen(
        [sys.executable, "train.py", "-m", *TINY, f"paths.output_dir={tmp_path}", *sweep[1:]],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    sweep_dir = tmp_path / "sweeps" / "t"
    deadline = time.time() + 1800  # a safety net only: the loop ends when a job is DONE
    while proc.poll() is None and time.time() < deadline and not list(sweep_dir.glob("*/DONE")):
        time.sleep(0.5)
    # into the second job: kill as soon as a job folder exists without DONE (a fixed sleep let
    # a fast machine finish the whole sweep first)
    while proc.poll() is None and time.time() < deadline:
        started = [p for p in sweep_dir.iterdir() if (p / "config.yaml").is_file()]
        if any(not (p / "DONE").is_file() for p in started):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(proc.pid, sig)
    code = proc.wait(timeout=120)  # a SIGTERM must stop the sweep, not just the current job
    assert code != 0
    assert not list(sweep_dir.glob("*/FAILED"))  # an interruption is not a failure
    finished = {
        p.parent.name: p.parent.joinpath("metrics.json").read_text()
        for p in sweep_dir.glob("*/DONE")
    }
    assert 1 <= len(finished) < 3
    # the same command again: finished jobs are skipped (untouched), the rest run
    again = _train(tmp_path, *sweep)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("is done already; skipping") == len(finished)
    for name, text in finished.items():
        assert (sweep_dir / name / "metrics.json").read_text() == text
    assert len(list(sweep_dir.glob("*/DONE"))) == 3
    # baselines into the same sweep, from the same cached warm-up
    base = _train(
        tmp_path,
        "-m",
        "sweep_name=t",
        "phases=[warmup,baseline]",
        "baseline=all_digital,all_analog",
    )
    assert base.returncode == 0, base.stderr[-2000:]
    assert len(list((tmp_path / "cache" / "warmup").iterdir())) == 1
    # the Pareto task over the sweep
    pareto = subprocess.run(
        [sys.executable, "tasks/pareto.py", f"sweep_dir={sweep_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pareto.returncode == 0, pareto.stderr[-2000:]
    rows = list(csv.DictReader((sweep_dir / "pareto.csv").open()))
    assert len(rows) == 5
    assert {r["kind"] for r in rows} == {"search", "baseline"}
    assert any(r["on_front_latency"] == "true" for r in rows)
    for name in ("selection.json", "budgets.csv", "pareto_latency.png", "pareto_energy.png"):
        assert (sweep_dir / name).is_file(), name
