# SPDX-License-Identifier: Apache-2.0
"""Trainer presets checked before training: synchronised BatchNorm is refused on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from odimo.errors import ConfigError
from odimo.lit.trainer import check_trainer
from tests.tasks.helpers import train_cfg


def test_ddp_preset_on_cpu_is_refused_with_the_preset_to_use(tmp_path: Path) -> None:
    cfg = train_cfg(tmp_path, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    with pytest.raises(ConfigError) as err:
        check_trainer(cfg.trainer)
    assert "trainer=ddp_cpu" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ("trainer=ddp_cpu", "trainer.devices=2"),
        ("trainer=cpu",),
        ("trainer=ddp",),  # on GPUs synchronised BatchNorm works
        ("trainer=ddp", "trainer.accelerator=cpu", "trainer.sync_batchnorm=false"),
    ],
)
def test_working_presets_pass(tmp_path: Path, overrides: tuple[str, ...]) -> None:
    check_trainer(train_cfg(tmp_path, *overrides).trainer)


def test_auto_accelerator_counts_as_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError):
        check_trainer({"accelerator": "auto", "sync_batchnorm": True})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check_trainer({"accelerator": "auto", "sync_batchnorm": True})
