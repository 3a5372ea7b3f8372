# SPDX-License-Identifier: Apache-2.0
"""The cascade refuses a little/big pair costed on different platforms (another chip, or the
same chip with other constants) unless `mix_platforms=true`: their costs would not add up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from odimo.cascade.preds import preds_path, save_predictions, write_info
from odimo.errors import ConfigError
from odimo.hw import Diana, DianaConstants, get_platform, platform_identity, platform_key
from odimo.tasks import cascade as cascade_task
from tests.tasks.helpers import CONF, REPO

SIZES = {"val": 160, "test": 100}


def fake_run(root: Path, name: str, platform, seed: int, ms: float, uj: float) -> Path:
    """A run folder with predictions (4 classes, same labels for every run) and its info."""
    run = root / name
    rng = np.random.default_rng(seed)
    for split, n in SIZES.items():
        labels = np.arange(n) % 4
        logits = rng.normal(size=(n, 4))
        logits[np.arange(n), labels] += 1.0 + seed  # a larger seed: a more accurate network
        save_predictions(preds_path(run, split), logits, labels)
    info = {"source": "run", "run_dir": str(run), "name": name, "dataset": "digits"}
    info.update(num_classes=4, latency_ms=ms, energy_uj=uj, platform=platform_identity(platform))
    write_info(run, info)
    return run


def cascade(little: Path, big: Path, out: Path, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "cascade",
            [f"little={little}", f"big={big}", f"output_dir={out}", "thresholds=21", *overrides],
        )
    return cascade_task.run(cfg)


PAIRS = {
    "two_chips": (get_platform("darkside"), get_platform("diana")),
    "recalibrated": (get_platform("diana"), Diana(constants=DianaConstants(power_both_mw=50.0))),
}


@pytest.mark.parametrize("pair", list(PAIRS))
def test_refused_unless_mixed(pair: str, tmp_path: Path) -> None:
    first, second = PAIRS[pair]
    keys = [platform_key(platform_identity(p)) for p in (first, second)]
    assert keys[0] != keys[1]
    little = fake_run(tmp_path, "little", first, 0, 1.0, 10.0)
    big = fake_run(tmp_path, "big", second, 2, 8.0, 90.0)
    with pytest.raises(ConfigError, match=f"little was costed on platform {keys[0]} but big on "
                       f"{keys[1]}.*mix_platforms=true"):  # fmt: skip
        cascade(little, big, tmp_path / "refused")
    assert not (tmp_path / "refused" / "cascade.json").exists()
    result = cascade(little, big, tmp_path / "mixed", "mix_platforms=true", "threshold=0.3")
    assert (tmp_path / "mixed" / "cascade.json").is_file()
    test = result["test"]
    # the costs of the two chips add up as the cascade's formula says
    assert test["latency_expected_ms"] == pytest.approx(1.0 + test["p_big"] * 8.0)
    assert test["energy_expected_uj"] == pytest.approx(10.0 + test["p_big"] * 90.0)
    assert 0.0 < test["p_big"] < 1.0


def test_one_platform_needs_no_flag(tmp_path: Path) -> None:
    little = fake_run(tmp_path, "little", get_platform("diana"), 0, 1.0, 10.0)
    big = fake_run(tmp_path, "big", get_platform("diana"), 2, 8.0, 90.0)
    result = cascade(little, big, tmp_path / "out", "threshold=0.3")
    assert result["test"]["latency_expected_ms"] > 1.0


def test_entry_point_refuses_in_one_line(tmp_path: Path) -> None:
    little = fake_run(tmp_path, "little", get_platform("darkside"), 0, 1.0, 10.0)
    big = fake_run(tmp_path, "big", get_platform("diana"), 2, 8.0, 90.0)
    args = [f"little={little}", f"big={big}", f"output_dir={tmp_path / 'out'}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "tasks/cascade.py", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "costed on platform darkside@" in lines[0] and "mix_platforms=true" in lines[0]
