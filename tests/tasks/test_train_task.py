# SPDX-License-Identifier: Apache-2.0
"""The main job in-process: phases, outputs, resume, warm-up cache, errors."""

from __future__ import annotations

import json
import math

import lightning.pytorch as L
import pytest
import torch
from hydra.utils import instantiate

from odimo.errors import CheckpointError, ConfigError, TrainingDivergedError
from odimo.models import load_mapped
from odimo.nn.mapping import Mapping
from odimo.pipeline import fit
from odimo.tasks.train import run
from tests.tasks.helpers import train_cfg

FINAL_KEYS = [
    "final/test/acc_hard",
    "final/val/acc_hard",
    "final/cost/latency_hard_cycles",
    "final/cost/latency_hard_ms",
    "final/cost/energy_hard_uj",
    "final/arch/analog_frac",
    "model",
    "dataset",
    "reg",
    "strength",
    "seed",
]


def test_search_and_finetune_write_every_output(tmp_path):
    metrics = run(train_cfg(tmp_path, "strength=1e-5"))
    run_dir = tmp_path / "run"
    for key in FINAL_KEYS:
        assert key in metrics, key
    assert metrics["kind"] == "search" and metrics["strength"] == 1e-5
    # the reported test accuracy is the saved deployed network's, recomputed independently
    model, _, _ = load_mapped(run_dir / "final" / "model.pt")
    datamodule = instantiate(train_cfg(tmp_path, "strength=1e-5").dataset.datamodule)
    datamodule.setup("test")
    correct = total = 0
    with torch.no_grad():
        for x, y in datamodule.test_dataloader():
            correct += int((model.eval()(x).argmax(1) == y).sum())
            total += len(y)
    assert metrics["final/test/acc_hard"] == pytest.approx(correct / total, abs=1e-6)
    assert metrics["final/cost/latency_hard_cycles"] > 0
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk["final/cost/latency_hard_ms"] == pytest.approx(
        on_disk["final/cost/latency_hard_cycles"] / 260e6 * 1e3
    )
    for name in (
        "DONE",
        "config.yaml",
        "mapping.json",
        "final/model.pt",
        "search/layers.csv",
        "search/cheap_heatmap.png",
        "mapping_bars.png",
        "search/checkpoints/last.ckpt",
        "search/checkpoints/best.ckpt",
        "finetune/checkpoints/best.ckpt",
        "search/csv/version_0/metrics.csv",
    ):
        assert (run_dir / name).is_file(), name
    mapping = Mapping.load(run_dir / "mapping.json")
    assert len(mapping.layers) == 22
    frac = mapping.unit_fraction(mapping.units.index("analog"))
    assert frac == pytest.approx(metrics["final/arch/analog_frac"])
    # a second call finds DONE and returns the stored metrics without training
    assert run(train_cfg(tmp_path, "strength=1e-5")) == on_disk


def test_warmup_is_trained_once_and_reused(tmp_path):
    run(train_cfg(tmp_path, "phases=[warmup]", run="a"))
    caches = list((tmp_path / "cache" / "warmup").iterdir())
    assert len(caches) == 1
    stamp = (caches[0] / "float.pt").stat().st_mtime_ns
    run(train_cfg(tmp_path, "strength=1e-5", run="b"))
    assert (caches[0] / "float.pt").stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "b" / "warmup.json").read_text())["cache_dir"] == str(caches[0])
    # another seed is another warm-up
    run(train_cfg(tmp_path, "phases=[warmup]", "seed=1", run="c"))
    assert len(list((tmp_path / "cache" / "warmup").iterdir())) == 2


def test_baseline_phase_trains_the_named_mapping(tmp_path):
    metrics = run(train_cfg(tmp_path, "phases=[warmup,baseline]", "baseline=io_digital"))
    assert metrics["kind"] == "baseline" and metrics["baseline"] == "io_digital"
    mapping = Mapping.load(tmp_path / "run" / "mapping.json")
    first, last = list(mapping.layers)[0], list(mapping.layers)[-1]
    assert set(mapping.layers[first]) == {0} and set(mapping.layers[last]) == {0}
    assert metrics["final/arch/analog_frac"] > 0.5


def _search_checkpoint(tmp_path, run_name):
    return torch.load(
        tmp_path / run_name / "search" / "checkpoints" / "last.ckpt",
        map_location="cpu",
        weights_only=True,
    )


class _Crash(Exception):
    """Stands for a job killed between two epochs."""


class _CrashAtEpoch(L.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise _Crash(f"stopped at epoch {self.epoch}")


def _tensors_equal(a, b, where: str = "") -> None:
    """Recursively: same keys, bit-identical tensors, equal plain values."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _tensors_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _tensors_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, monkeypatch):
    args = ("search.epochs=3", "phases=[warmup,search]")
    run(train_cfg(tmp_path, "phases=[warmup]", run="w"))  # both runs start from the cache
    run(train_cfg(tmp_path, *args, run="full"))
    full = _search_checkpoint(tmp_path, "full")
    # the same job, crashed at the start of the search's second epoch, then run again
    crash = _CrashAtEpoch(1)
    real = fit.progress_callbacks

    def with_crash(cfg):
        return [*real(cfg), crash] if crash.epoch is not None else real(cfg)

    monkeypatch.setattr(fit, "progress_callbacks", with_crash)
    with pytest.raises(_Crash):
        run(train_cfg(tmp_path, *args, run="cut"))
    cut = tmp_path / "cut"
    assert (cut / "FAILED").is_file() and not (cut / "search" / "DONE").exists()
    assert _search_checkpoint(tmp_path, "cut")["global_step"] == math.ceil(256 / 64)
    crash.epoch = None
    run(train_cfg(tmp_path, *args, run="cut"))
    resumed = _search_checkpoint(tmp_path, "cut")
    assert resumed["global_step"] == full["global_step"] == 3 * math.ceil(256 / 64)
    # weights, α, temperatures, optimizer moments (SGD momentum, Adam m and v) and schedules
    # are bit-identical to the uninterrupted run's at the same step
    _tensors_equal(full["state_dict"], resumed["state_dict"], "state_dict")
    _tensors_equal(full["optimizer_states"], resumed["optimizer_states"], "optimizer")
    _tensors_equal(full["lr_schedulers"], resumed["lr_schedulers"], "schedulers")
    assert set(resumed["optimizer_states"][0]) == {"weights", "alpha", "quant"}
    moments = resumed["optimizer_states"][0]["alpha"]["state"]
    assert moments and all(float(s["exp_avg_sq"].abs().sum()) > 0 for s in moments.values())
    temps = [v for k, v in resumed["state_dict"].items() if k.endswith("temperature")]
    assert temps and all(float(t) == pytest.approx(1e-3) for t in temps)  # per-step T, last step
    metrics = [json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("full", "cut")]
    assert metrics[0]["final/test/acc_hard"] == metrics[1]["final/test/acc_hard"]


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="strength must be a number"):
        run(train_cfg(tmp_path, "strength=abc", run="s"))
    with pytest.raises(ConfigError, match="unknown phases"):
        run(train_cfg(tmp_path, "phases=[warmup,serach]", run="p"))
    with pytest.raises(ConfigError, match="needs 'search'"):
        run(train_cfg(tmp_path, "phases=[warmup,finetune]", run="f"))
    assert (tmp_path / "s" / "FAILED").is_file()


def test_nonfinite_loss_stops_with_a_clear_error(tmp_path):
    with pytest.raises(TrainingDivergedError, match="NaN/inf"):
        run(train_cfg(tmp_path, "strength=1e300", "callbacks.nonfinite_every=1"))
    assert "TrainingDivergedError" in (tmp_path / "run" / "FAILED").read_text()


def test_corrupt_checkpoint_names_the_file(tmp_path):
    run(train_cfg(tmp_path, "phases=[warmup]", run="w"))
    cache = next((tmp_path / "cache" / "warmup").iterdir())
    (cache / "float.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="float.pt"):
        run(train_cfg(tmp_path, run="x"))
