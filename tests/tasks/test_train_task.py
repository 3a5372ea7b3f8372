# SPDX-License-Identifier: Apache-2.0
"""The main job in-process: phases, outputs, resume, warm-up cache, errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from odimo.errors import CheckpointError, ConfigError, TrainingDivergedError
from odimo.nn.mapping import Mapping
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
    assert 0.0 <= metrics["final/test/acc_hard"] <= 1.0
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
        "search/analog_heatmap.png",
        "mapping_bars.png",
        "search/checkpoints/last.ckpt",
        "search/checkpoints/best.ckpt",
        "finetune/checkpoints/best.ckpt",
        "search/csv/version_0/metrics.csv",
    ):
        assert (run_dir / name).is_file(), name
    mapping = Mapping.load(run_dir / "mapping.json")
    assert len(mapping.layers) == 22
    frac = mapping.analog_fraction()
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
        weights_only=False,
    )


def test_global_step_counts_batches_and_resume_continues_exactly(tmp_path):
    # the reference's per-epoch temperature rule (the per-step one: test_search_quality.py)
    per_epoch = "search.temperature.final=null"
    # an uninterrupted 2-epoch search
    run(train_cfg(tmp_path, "search.epochs=2", "phases=[warmup,search]", per_epoch, run="full"))
    full = _search_checkpoint(tmp_path, "full")
    # an interrupted one: 1 epoch, then the job is re-run with 2 epochs and resumes
    run(train_cfg(tmp_path, "search.epochs=1", "phases=[warmup,search]", per_epoch, run="cut"))
    for marker in ("DONE", "search/DONE", "metrics.json"):
        (tmp_path / "cut" / marker).unlink()
    one = _search_checkpoint(tmp_path, "cut")
    run(train_cfg(tmp_path, "search.epochs=2", "phases=[warmup,search]", per_epoch, run="cut"))
    resumed = _search_checkpoint(tmp_path, "cut")
    batches = math.ceil(256 / 64)  # debug: 256 training images, batch 64
    assert one["global_step"] == batches
    assert full["global_step"] == resumed["global_step"] == 2 * batches
    temps = [v for k, v in resumed["state_dict"].items() if k.endswith("temperature")]
    full_temps = [v for k, v in full["state_dict"].items() if k.endswith("temperature")]
    assert temps and all(float(t) == pytest.approx(math.exp(-0.045)) for t in temps)
    assert [float(t) for t in temps] == [float(t) for t in full_temps]
    # the optimizer state (three children) and the schedule were restored and stepped on
    assert set(resumed["optimizer_states"][0]) == {"weights", "alpha", "quant"}
    assert resumed["lr_schedulers"][0]["last_epoch"] == full["lr_schedulers"][0]["last_epoch"]


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
