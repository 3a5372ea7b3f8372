# SPDX-License-Identifier: Apache-2.0
"""tasks/system.py through its real config: ranking, the best cascades, the little networks."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from odimo.errors import ConfigError
from odimo.io import write_records_csv
from odimo.tasks import system as system_task
from tests.cascade.test_pool import NONE, fake_net, share
from tests.tasks.helpers import CONF, REPO


def _cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="system", overrides=list(overrides))


def test_system_task_ranks_writes_and_prints_the_little_networks(tmp_path: Path, capsys) -> None:
    pool = tmp_path / "pool"
    fake_net(pool, "big", 10.0, NONE)
    fake_net(pool, "good", 1.0, share(0.2, 1))
    fake_net(pool, "blind", 0.5, NONE, sure_wrong=share(0.3, 2))
    catalogue = tmp_path / "catalogue.csv"
    write_records_csv(
        catalogue,
        ["key", "diana_min_latency_uj", "macs"],
        [
            {"key": "probe/s1/3", "diana_min_latency_uj": 0.4, "macs": 2e6},
            {"key": "probe/s1/9", "diana_min_latency_uj": 0.8, "macs": 4e6},
            {"key": "resnet/s2/1", "diana_min_latency_uj": 2.0, "macs": 9e7},  # > 10 / 10
        ],
    )
    out = tmp_path / "out"
    result = system_task.run(
        _cfg(
            f"pool=[{pool / 'big'},{pool / 'good'},{pool / 'blind'}]",
            f"output_dir={out}",
            f"little.catalogue={catalogue}",
        )
    )
    with (out / "ranking.csv").open() as f:
        ranking = list(csv.DictReader(f))
    assert (ranking[0]["little"], ranking[0]["big"], ranking[0]["meets"]) == ("good", "big", "true")
    assert len(ranking) == 3 * 3  # 3 pairs with cost(little) < cost(big), 3 scores each
    for score in ("maxp", "margin", "entropy"):
        cascade = json.loads((out / f"cascade_{score}" / "cascade.json").read_text())
        row = next(r for r in result["ranking"] if r["score"] == score)
        assert cascade["threshold"] == row["threshold"]
        assert cascade["threshold_source"] == "val_select:near_big"
        assert cascade["val"]["acc_holdout"] == pytest.approx(row["acc_holdout"])
    # the little networks: ≤ 1/10 of the most accurate network's energy (big, 10 µJ)
    assert [c["name"] for c in result["little"]["chosen"]] == ["probe/s1/3", "probe/s1/9"]
    script = (out / "little.sh").read_text()
    assert (
        "python train.py -m model=sampled model.space=probe model.law=s1 model.id=3,9 "
        "dataset=synthetic 'phases=[warmup,baseline]' baseline=min_latency \"$@\"" in script
    )
    printed = capsys.readouterr().out
    assert "1. good → big" in printed and "model.id=3,9" in printed


def test_system_task_refuses_bad_input(tmp_path: Path) -> None:
    fake_net(tmp_path, "big", 10.0, NONE)
    with pytest.raises(ConfigError, match="at least 2"):
        system_task.run(_cfg(f"pool={tmp_path / 'big'}", f"output_dir={tmp_path / 'o'}"))
    with pytest.raises(ConfigError, match="rank_on"):
        system_task.run(_cfg(f"pool={tmp_path}", f"output_dir={tmp_path}", "rank_on=test"))
    with pytest.raises(ConfigError, match="unit suffix"):
        system_task.run(
            _cfg(
                f"pool={tmp_path / 'big'}",
                f"output_dir={tmp_path / 'o'}",
                f"little.catalogue={tmp_path}",
                "little.cost_column=macs",
            )
        )
    (tmp_path / "big" / "config.yaml").write_text("dataset: {input_size: [1, 28, 28]}\n")
    catalogue = tmp_path / "cat.csv"
    catalogue.write_text("key,input_size,diana_min_latency_uj,macs\nprobe/s1/1,3x32x32,0.5,1e6\n")
    with pytest.raises(ConfigError, match=r"characterized at \['3x32x32'\].*1x28x28"):
        system_task.run(
            _cfg(
                f"pool={tmp_path / 'big'}",
                f"output_dir={tmp_path / 'o'}",
                f"little.catalogue={catalogue}",
            )
        )
    proc = subprocess.run(
        [sys.executable, str(REPO / "tasks" / "system.py"), f"output_dir={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "pool is required" in proc.stderr.strip().splitlines()[-1]
