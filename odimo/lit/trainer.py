# SPDX-License-Identifier: Apache-2.0
"""Trainer settings that cannot work together, refused before any phase starts.

Lightning accepts them and fails minutes later (after the warm-up) with a traceback; checking
the composed `trainer` config first turns that into one line saying which preset to use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from odimo.errors import ConfigError


def runs_on_cpu(trainer: Mapping[str, Any]) -> bool:
    """Whether the trainer's accelerator is the CPU (`auto` is the CPU without CUDA)."""
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


def check_trainer(trainer: Mapping[str, Any]) -> None:
    """Refuse synchronised BatchNorm on the CPU (PyTorch's SyncBatchNorm is a GPU layer: DDP
    stops with "SyncBatchNorm layers only work with GPU modules" once the warm-up is built).
    """
    if trainer.get("sync_batchnorm") and runs_on_cpu(trainer):
        raise ConfigError(
            "trainer.sync_batchnorm=true needs GPUs (SyncBatchNorm is a GPU layer) but the "
            "accelerator is the CPU: use trainer=ddp_cpu for DDP over CPU processes "
            "(e.g. trainer=ddp_cpu trainer.devices=2), or trainer.sync_batchnorm=false"
        )
