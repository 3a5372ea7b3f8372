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
from tests.tasks.helpers import CONF, REPO


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


def test_installed_platform_goes_to_the_user_config_and_train_py_finds_it(tmp_path, monkeypatch):
    user = tmp_path / "user_conf"
    monkeypatch.setenv("ODIMO_CONFIG_DIR", str(user))
    table = write_rows(tmp_path / "m.csv", synthetic_rows(layers=60, noise=0.0))
    name = f"test_cal_{uuid.uuid4().hex[:8]}"
    report = run(
        cfg(f"measurements={table}", f"name={name}", "install=true", f"output_dir={tmp_path}")
    )
    fitted = report["constants"]["calibrated"]["analog_pass_cycles"]
    assert fitted == pytest.approx(TRUE_CONSTANTS.analog_pass_cycles, rel=1e-9)
    assert (user / "platform" / f"{name}.yaml").is_file()
    assert not (PLATFORM_CONF_DIR / f"{name}.yaml").exists()  # never into the package
    assert get_platform(name).constants.analog_pass_cycles == pytest.approx(fitted, rel=1e-12)
    res = subprocess.run(
        [sys.executable, "train.py", f"platform={name}", "--cfg", "job"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    platform = get_platform(yaml.safe_load(res.stdout)["platform"])
    assert platform.name == name
    assert platform.constants.analog_pass_cycles == pytest.approx(fitted, rel=1e-12)


def test_held_out_error_is_by_layer_group_and_exact_on_noise_free_data(tmp_path):
    table = write_rows(tmp_path / "m.csv", synthetic_rows(layers=40, noise=0.0))
    report = run(cfg(f"measurements={table}", f"output_dir={tmp_path}", "folds=4"))
    held = report["held_out"]
    assert held["folds"] == 4 and held["groups"] == 40
    assert held["latency"]["median_rel_error"] < 1e-9  # the model family holds the true chip
    noisy = write_rows(tmp_path / "n.csv", synthetic_rows(layers=40, noise=0.1, seed=3))
    report = run(cfg(f"measurements={noisy}", f"output_dir={tmp_path}", "folds=4"))
    # fitted on other layers, a held-out layer is predicted worse than in-sample
    assert (
        report["held_out"]["latency"]["median_rel_error"]
        > report["calibrated"]["latency"]["median_rel_error"] * 0.9
    )


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
