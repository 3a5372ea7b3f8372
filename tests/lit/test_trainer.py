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


def test_the_train_task_refuses_it_before_any_phase(tmp_path: Path) -> None:
    """`python train.py trainer=ddp trainer.accelerator=cpu trainer.devices=2`: one line, exit
    2, and no warm-up started (nothing written under the run dir but the FAILED marker)."""
    import subprocess
    import sys

    from tests.tasks.helpers import REPO

    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "debug=default",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            f"paths.output_dir={tmp_path}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: trainer.sync_batchnorm=true needs GPUs")
    assert "trainer=ddp_cpu" in out.stderr and out.stderr.strip().count("\n") == 0
    assert not (tmp_path / "cache").exists()  # no warm-up ran
