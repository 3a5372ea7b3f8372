# SPDX-License-Identifier: Apache-2.0
"""Faults and re-runs of real (tiny) jobs: corrupt checkpoints, a full disk, changed configs,
the cached warm-up, bad epochs, NaN losses."""

from __future__ import annotations

import errno
import json

import lightning.pytorch as L
import pytest

from odimo.errors import ConfigError, TrainingDivergedError
from odimo.io import DiskFullError, config_fingerprint
from odimo.io import atomic as files
from odimo.pipeline import fit
from odimo.tasks.train import run
from tests.tasks.helpers import train_cfg


class _Crash(Exception):
    """Stands for a job killed between two epochs."""


class _CrashIn(L.Callback):
    """Crash at the start of `epoch` of the phase whose checkpoints go to `folder`."""

    def __init__(self, folder: str, epoch: int):
        self.folder, self.epoch = folder, epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        here = trainer.default_root_dir.endswith(self.folder)
        if self.epoch is not None and here and trainer.current_epoch == self.epoch:
            raise _Crash(f"{self.folder} stopped at epoch {self.epoch}")


def _with(monkeypatch, callback: L.Callback) -> None:
    real = fit.progress_callbacks
    monkeypatch.setattr(fit, "progress_callbacks", lambda cfg: [*real(cfg), callback])


def _versions(phase_dir):
    return sorted(p.name for p in (phase_dir / "csv").iterdir())


def test_corrupt_last_checkpoint_restarts_from_the_best_and_keeps_finished_phases(
    tmp_path, monkeypatch
):
    args = ("finetune.epochs=2", "strength=1e-5")
    crash = _CrashIn("finetune", 1)
    _with(monkeypatch, crash)
    with pytest.raises(_Crash):
        run(train_cfg(tmp_path, *args))
    job = tmp_path / "run"
    search_result = (job / "search" / "result.pt").stat().st_mtime_ns
    last = job / "finetune" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a torn/corrupt file
    crash.epoch = None
    with pytest.warns(RuntimeWarning, match="last.ckpt is unreadable"):
        metrics = run(train_cfg(tmp_path, *args))
    assert (job / "DONE").is_file() and metrics["kind"] == "search"
    assert (job / "finetune" / "checkpoints" / "last.corrupt").is_file()
    assert (job / "search" / "result.pt").stat().st_mtime_ns == search_result  # untouched
    assert _versions(job / "search") == ["version_0"]  # the search did not run again
    assert _versions(job / "finetune") == ["version_0", "version_1"]  # resumed once


def test_full_disk_is_one_line_and_loses_nothing_finished(tmp_path, monkeypatch):
    real = files.torch.save

    def full_at_final_model(obj, path):
        if ".model.pt." in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(obj, path)

    monkeypatch.setattr(files.torch, "save", full_at_final_model)
    with pytest.raises(DiskFullError, match=r"no space left .*model\.pt.*run the same command"):
        run(train_cfg(tmp_path, "strength=1e-5"))
    job = tmp_path / "run"
    assert "DiskFullError" in (job / "FAILED").read_text()
    assert (job / "search" / "DONE").is_file() and (job / "finetune" / "DONE").is_file()
    monkeypatch.setattr(files.torch, "save", real)
    run(train_cfg(tmp_path, "strength=1e-5"))  # space freed: the same command finishes
    assert (job / "DONE").is_file() and (job / "final" / "model.pt").is_file()
    assert not (job / "FAILED").exists()
    assert _versions(job / "finetune") == ["version_0"]  # no phase trained twice


def test_another_config_in_a_job_folder_is_refused_unless_forced(tmp_path):
    first = run(train_cfg(tmp_path, "strength=1e-5"))
    with pytest.raises(ConfigError, match="another config .*changed: strength"):
        run(train_cfg(tmp_path, "strength=1e-4"))
    stamp = json.loads((tmp_path / "run" / "DONE").read_text())
    assert stamp["fingerprint"] == config_fingerprint(train_cfg(tmp_path, "strength=1e-5"))
    forced = run(train_cfg(tmp_path, "strength=1e-4", "force=true"))
    assert forced["strength"] == 1e-4 and first["strength"] == 1e-5
    assert _versions(tmp_path / "run" / "search") == ["version_0"]  # old outputs were deleted


def test_cached_warmup_alone_and_bad_epochs(tmp_path):
    first = run(train_cfg(tmp_path, "phases=[warmup]", run="a"))
    again = run(train_cfg(tmp_path, "phases=[warmup]", run="b"))  # crashed when cached
    assert again["kind"] == first["kind"] == "float"
    assert again["final/val/acc_float"] == first["final/val/acc_float"]
    for i, (override, needle) in enumerate(
        [
            ("search.epochs=-3", "search.epochs must be an integer >= 1, got -3"),
            ("finetune.epochs=0", "finetune.epochs must be an integer >= 1, got 0"),
            ("warmup.patience=-1", "warmup.patience must be an integer >= 0"),
        ]
    ):
        with pytest.raises(ConfigError, match=needle):
            run(train_cfg(tmp_path, override, run=f"bad{i}"))


def test_nonfinite_loss_fails_naming_the_step(tmp_path):
    with pytest.raises(TrainingDivergedError, match=r"\[search\] detected at optimizer step 1 "):
        run(train_cfg(tmp_path, "strength=1e300", "callbacks.nonfinite_every=1"))
    assert "optimizer step 1" in (tmp_path / "run" / "FAILED").read_text()


def test_compile_key_compiles_the_network_in_place(tmp_path):
    from odimo.lit import WarmupModule
    from odimo.models import build_model, model_spec

    cfg = train_cfg(tmp_path, "compile=true")
    spec = model_spec(cfg.model, cfg.dataset.input_size, cfg.dataset.num_classes)
    module = WarmupModule(build_model(spec, "float"), spec.num_classes, {})
    names = list(module.state_dict())
    fit.maybe_compile(module, bool(cfg.compile))
    assert module.model._compiled_call_impl is not None
    assert list(module.state_dict()) == names  # checkpoints keep their keys
