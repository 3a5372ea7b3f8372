# SPDX-License-Identifier: Apache-2.0
"""Composing the real configs of the entry points for in-process tests."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"


#: The digits at their original 8x8 (the default shows them at 16x16): the in-process and
#: end-to-end tests check mechanics, and at 8x8 they run in about half the time.
DIGITS_8X8 = "dataset.datamodule.size=8"


def train_cfg(tmp_path: Path, *overrides: str, run: str = "run") -> DictConfig:
    """conf/train.yaml with tiny epochs on 8x8 digits (unless another dataset is chosen),
    writing everything under tmp_path."""
    other_dataset = any(o.startswith("dataset=") for o in overrides)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[
                "debug=default",
                *([] if other_dataset else [DIGITS_8X8]),
                f"paths.output_dir={tmp_path}",
                f"paths.run_dir={tmp_path / run}",
                *overrides,
            ],
        )
