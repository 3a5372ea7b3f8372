# SPDX-License-Identifier: Apache-2.0
"""tasks/refine.py end to end: the proposed command on stdout, bad input as one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.analysis.test_refine import _sweep
from tests.tasks.helpers import REPO


def _refine(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "tasks" / "refine.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_prints_the_gaps_and_one_train_command(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, ["dataset=fashion_mnist"])
    out = _refine(f"sweep_dir={sweep}", "n=2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("5 finished jobs; latency front hypervolume")
    assert lines[-1] == (
        f"python train.py -m dataset=fashion_mnist reg.target_ms=0.3162,0.5657 "
        f"hydra.sweep.dir={sweep.resolve()}"
    )


def test_bad_input_is_one_line_with_exit_2(tmp_path: Path) -> None:
    for args in ([f"sweep_dir={tmp_path / 'none'}"], [f"sweep_dir={tmp_path}", "n=0"]):
        out = _refine(*args)
        assert out.returncode == 2
        assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: ")
