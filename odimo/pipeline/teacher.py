# SPDX-License-Identifier: Apache-2.0
"""The teacher of `train.distill`: a finished run's network on exact analog sums."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from odimo.errors import CheckpointError, ConfigError
from odimo.export.run import load_run_config
from odimo.hw import with_analog
from odimo.lit.chip import on_platform
from odimo.lit.distill import Distillation, checked_mix
from odimo.models import load_mapped

KEY = "train.distill.teacher"


def check_distill(cfg: DictConfig) -> None:
    """At job start, before any training: `train.distill`'s teacher is a finished run of this
    run's dataset and its mix is valid (one config-error line otherwise)."""
    distill = OmegaConf.select(cfg, "train.distill")
    if distill is None or distill.get("teacher") in (None, ""):
        return
    checked_mix(distill.get("weight", 0.5), distill.get("temperature", 4.0))
    teacher_model(distill.teacher, str(cfg.dataset.name))


def teacher_model(run_dir: str | Path, dataset: str) -> Path:
    """final/model.pt of the finished run `run_dir` of `dataset`; a config error otherwise."""
    run_dir = Path(str(run_dir))
    path = run_dir / "final" / "model.pt"
    if not path.is_file():
        raise ConfigError(f"{KEY}={run_dir}: no final/model.pt there; give a finished run's dir")
    teacher_dataset = OmegaConf.select(load_run_config(run_dir), "dataset.name")
    if str(teacher_dataset) != str(dataset):
        raise ConfigError(
            f"{KEY}={run_dir} was trained on {teacher_dataset}, this run is on {dataset}: "
            "give a run of the same dataset"
        )
    return path


def load_teacher(run_dir: str | Path, num_classes: int, dataset: str) -> nn.Module:
    """The network of the finished run `run_dir` on exact analog sums; one config-error line
    when it is not a finished run of this dataset."""
    path = teacher_model(run_dir, dataset)
    try:
        mapped, platform, _ = load_mapped(path)
    except CheckpointError as err:
        raise ConfigError(f"{KEY}: {err}") from None
    if mapped.spec.num_classes != int(num_classes):
        raise ConfigError(
            f"{KEY}={run_dir} has {mapped.spec.num_classes} classes, this run "
            f"{num_classes}: give a run of the same dataset"
        )
    return on_platform(mapped, with_analog(platform, None))


def distillation(cfg: DictConfig, num_classes: int) -> Distillation | None:
    """`train.distill` of the run config: the teacher and its loss, or None when off.

    Building the teacher initialises a network before its weights are loaded: that draws from
    torch's global generator, which is restored afterwards, so the student's shuffles and noise
    draws are those of the same run without a teacher."""
    distill = OmegaConf.select(cfg, "train.distill")
    if distill is None or distill.get("teacher") in (None, ""):
        return None
    with torch.random.fork_rng(devices=[]):
        teacher = load_teacher(distill.teacher, num_classes, str(cfg.dataset.name))
    return Distillation(teacher, distill.get("weight", 0.5), distill.get("temperature", 4.0))
