# SPDX-License-Identifier: Apache-2.0
"""Composing the real configs of the entry points for in-process tests."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"


def train_cfg(tmp_path: Path, *overrides: str, run: str = "run") -> DictConfig:
    """conf/train.yaml with tiny epochs, writing everything under tmp_path."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[
                "debug=default",
                f"paths.output_dir={tmp_path}",
                f"paths.run_dir={tmp_path / run}",
                *overrides,
            ],
        )
