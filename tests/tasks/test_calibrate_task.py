# SPDX-License-Identifier: Apache-2.0
"""The calibrate task: a synthetic table's constants recovered, the YAML used by train.py."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import yaml
from hydra import compose, initialize_config_dir

from odimo.calibration.synthetic import TRUE_CONSTANTS, synthetic_rows, write_rows
from odimo.errors import ConfigError, OdimoError
from odimo.hw import get_platform
from odimo.hw.config import PLATFORM_CONF_DIR
from odimo.tasks.calibrate import run
from tests.tasks.helpers import CONF, REPO, train_cfg


def cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("calibrate", list(overrides))


def test_entry_point_recovers_the_constants_and_writes_a_platform_yaml(tmp_path):
    table = write_rows(tmp_path / "m.csv", synthetic_rows(layers=150, noise=0.03, seed=1))
    res = subprocess.run(
        [
            sys.executable,
            "tasks/calibrate.py",
            f"measurements={table}",
            "name=chip_cal",
            f"output_dir={tmp_path / 'out'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    data = yaml.safe_load((tmp_path / "out" / "chip_cal.yaml").read_text())
    assert data["name"] == "chip_cal" and data["kind"] == "diana"
    for key in ("analog_pass_cycles", "load_store_divisor", "power_both_mw"):
        assert data["constants"][key] == pytest.approx(getattr(TRUE_CONSTANTS, key), rel=0.03)
    assert (tmp_path / "out" / "calibration.json").is_file()
    assert "spearman" in res.stdout and "regret" in res.stdout


def test_installed_platform_is_what_train_py_platform_name_uses(tmp_path):
    table = write_rows(tmp_path / "m.csv", synthetic_rows(layers=60, noise=0.0))
    name = f"test_cal_{uuid.uuid4().hex[:8]}"
    try:
        report = run(
            cfg(f"measurements={table}", f"name={name}", "install=true", f"output_dir={tmp_path}")
        )
        fitted = report["constants"]["calibrated"]["analog_pass_cycles"]
        assert fitted == pytest.approx(TRUE_CONSTANTS.analog_pass_cycles, rel=1e-9)
        platform = get_platform(train_cfg(tmp_path, f"platform={name}").platform)
        assert platform.name == name
        assert platform.constants.analog_pass_cycles == pytest.approx(fitted, rel=1e-12)
        assert get_platform(name).constants == platform.constants  # by name: load_mapped's path
    finally:
        (PLATFORM_CONF_DIR / f"{name}.yaml").unlink(missing_ok=True)


def test_missing_fields_and_bad_settings_are_clear_errors(tmp_path):
    rows = synthetic_rows(layers=3, noise=0.0)
    table = write_rows(
        tmp_path / "m.csv", [{k: v for k, v in r.items() if k != "ch_analog"} for r in rows]
    )
    with pytest.raises(OdimoError, match="lacks column.*ch_analog"):
        run(cfg(f"measurements={table}", f"output_dir={tmp_path}"))
    with pytest.raises(OdimoError, match="does not exist"):
        run(cfg(f"measurements={tmp_path / 'nope.csv'}", f"output_dir={tmp_path}"))
    with pytest.raises(ConfigError, match="measurements is required"):
        run(cfg(f"output_dir={tmp_path}"))


def test_entry_point_bad_input_is_one_line(tmp_path):
    (tmp_path / "m.csv").write_text("c_in,c_out\n3,8\n")
    res = subprocess.run(
        [
            sys.executable,
            "tasks/calibrate.py",
            f"measurements={tmp_path / 'm.csv'}",
            f"output_dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "lacks column(s) k_x" in lines[0]
