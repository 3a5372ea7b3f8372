# SPDX-License-Identifier: Apache-2.0
"""Results carry their platform: a re-calibrated YAML does not change an old model's costs, and
fronts or cascades refuse to mix cost models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from odimo.errors import OdimoError
from odimo.hw import (
    Diana,
    DianaConstants,
    get_platform,
    platform_identity,
    platform_key,
    platform_of_record,
)
from odimo.models import ModelSpec, build_model, load_mapped, save_mapped
from odimo.nn import NetworkCost
from odimo.tasks.pareto import run as pareto_run
from tests.tasks.test_pareto_task import _metrics, compose_cfg


def test_loading_uses_the_stored_constants_not_todays_yaml(tmp_path):
    slow = Diana(constants=DianaConstants(analog_pass_cycles=40.0))  # named "diana" too
    spec = ModelSpec("res20", (1, 8, 8), 10)
    model = build_model(spec, "mapped", slow)
    save_mapped(tmp_path / "model.pt", model, slow)
    loaded, platform, _ = load_mapped(tmp_path / "model.pt")
    assert platform.constants.analog_pass_cycles == 40.0
    assert get_platform("diana").constants.analog_pass_cycles == 18.2
    assert platform_key(platform_identity(platform)) != platform_key(
        platform_identity(get_platform("diana"))
    )
    cost = NetworkCost(loaded, platform, spec.input_size).summary()
    assert cost == NetworkCost(model, slow, spec.input_size).summary()
    assert platform_of_record("diana").constants == get_platform("diana").constants  # old files


def _job(root: Path, name: str, platform, acc: float, ms: float) -> None:
    job = root / name
    job.mkdir(parents=True)
    metrics = _metrics("search", 1e-6, ms, ms * 10, acc, acc, 0.3)
    metrics["platform"] = platform_identity(platform)
    (job / "metrics.json").write_text(json.dumps(metrics))
    (job / "DONE").write_text("")


def test_pareto_refuses_a_mix_of_platforms_unless_grouped(tmp_path):
    calibrated = Diana(constants=DianaConstants(power_both_mw=50.0))
    _job(tmp_path, "a", get_platform("diana"), 0.9, 1.0)
    _job(tmp_path, "b", get_platform("diana"), 0.8, 0.5)
    _job(tmp_path, "c", calibrated, 0.85, 0.7)
    with pytest.raises(OdimoError, match="costed on 2 platforms.*group_by_platform=true"):
        pareto_run(compose_cfg([f"sweep_dir={tmp_path}"]))
    out = pareto_run(compose_cfg([f"sweep_dir={tmp_path}", "group_by_platform=true"]))
    assert sorted(r["n_jobs"] for r in out.values()) == [1, 2]
    assert all(Path(r["out_dir"]).name.startswith("diana_") for r in out.values())


def test_pareto_entry_point_refuses_two_chips_in_one_line(tmp_path):
    """Darkside and DIANA jobs in one sweep: exit 2 and one line naming the way out."""
    import os
    import subprocess
    import sys

    from tests.tasks.helpers import REPO

    _job(tmp_path, "a", get_platform("diana"), 0.9, 1.0)
    _job(tmp_path, "b", get_platform("darkside"), 0.8, 0.5)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "tasks/pareto.py", f"sweep_dir={tmp_path}", f"out_dir={tmp_path / 'o'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "costed on 2 platforms" in lines[0] and "group_by_platform=true" in lines[0]
