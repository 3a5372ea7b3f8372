# SPDX-License-Identifier: Apache-2.0
"""Entry points on converted networks, end to end through subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from odimo.convert.measure import measure_arch
from odimo.hw import get_platform
from odimo.models import ModelSpec, build_model
from tests.convert.nets import Mixed

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_convert_task_prints_and_writes_the_table(tmp_path) -> None:
    out = tmp_path / "table.json"
    proc = run("tasks/convert.py", "archs=[squeezenet1_0]", "sizes=[32]", f"output={out}")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["arch"] == "squeezenet1_0"
    expected = measure_arch("squeezenet1_0", (3, 32, 32), 10, get_platform("diana"))
    assert rows[0]["layers"] == expected.layers == 26 and rows[0]["searchable"] == 26
    assert {k: tuple(v) for k, v in rows[0]["baselines"].items()} == expected.baselines
    assert "| squeezenet1_0 | 32×32 |" in proc.stdout


def test_unsupported_network_fails_with_one_line(tmp_path) -> None:
    proc = run("tasks/cost_report.py", "model=torchvision", "model.arch=mobilenet_v3_small")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "'features_0_2'" in lines[0] and "Hardswish" in lines[0]


def test_pretrained_weights_skip_the_warmup(tmp_path) -> None:
    """`model.weights=<file> warmup.epochs=0`: the cached warm-up IS the file's network."""
    torch.manual_seed(1)
    net = Mixed(10, 1)
    weights = tmp_path / "w.pt"
    torch.save(net.state_dict(), weights)
    proc = run(
        "train.py",
        "model=custom",
        "model.target=tests.convert.nets:mixed",
        f"model.weights={weights}",
        "phases=[warmup]",
        "warmup.epochs=0",
        f"paths.output_dir={tmp_path / 'out'}",
        "callbacks.progress=none",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (cache,) = (tmp_path / "out" / "cache" / "warmup").iterdir()
    saved = torch.load(cache / "float.pt", weights_only=True)["state_dict"]
    spec = ModelSpec("custom", (1, 8, 8), 10, (("target", "tests.convert.nets:mixed"),))
    model = build_model(spec, "float")
    model.load_state_dict(saved)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), net.eval()(x))
