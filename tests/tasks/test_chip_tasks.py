# SPDX-License-Identifier: Apache-2.0
"""The chip arithmetic end to end: chip-aware training, metrics.json, chip_eval, integer export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from odimo.cascade.predict import predict_finished_run
from odimo.errors import ConfigError
from odimo.export.integer_run import export_integer_run, export_qdq_run
from odimo.lit.chip import chip_accuracy
from odimo.models import load_mapped
from odimo.tasks.chip_eval import run as chip_eval
from odimo.tasks.train import run

from .helpers import train_cfg


def test_chip_aware_baseline_reports_chip_accuracy_and_exports_exactly(tmp_path) -> None:
    overrides = ("phases=[warmup,baseline]", "baseline=all_analog", "train.noise=true")
    metrics = run(train_cfg(tmp_path, *overrides, "eval.noise_draws=2"))
    assert metrics["final/accuracy_arithmetic"] == "chip_adc"
    # chip-aware training keeps the epoch that validates best under the deployment noise
    best = tmp_path / "run" / "baseline" / "checkpoints" / "best.ckpt"
    best = torch.load(best, weights_only=False)
    chosen = [v for k, v in best["callbacks"].items() if "ModelCheckpoint" in k]
    assert {c["monitor"] for c in chosen} >= {"val/acc_chip"}
    model, platform, _ = load_mapped(tmp_path / "run" / "final" / "model.pt")
    assert platform.analog.enabled and all(
        r.calibrated for r in model.modules() if type(r).__name__ == "AnalogReadout"
    )
    # the reported noisy accuracy is what an independent evaluation of the saved network gets
    from hydra.utils import instantiate

    cfg = OmegaConf.load(tmp_path / "run" / "config.yaml")
    datamodule = instantiate(cfg.dataset.datamodule)
    datamodule.setup("test")
    res = chip_accuracy(model, datamodule.test_dataloader(), platform.analog.noise, 2, 0)
    assert metrics["final/test/acc_chip_mean"] == pytest.approx(res["mean"])
    assert metrics["final/test/acc_chip_std"] == pytest.approx(res["std"])
    assert {"final/val/acc_chip_mean", "final/val/acc_chip_std"} <= set(metrics)
    info = predict_finished_run(tmp_path / "run", ["test"], 256, noise_draws=2)
    assert info["test_acc"] == pytest.approx(metrics["final/test/acc_hard"])
    assert info["test_acc_chip_mean"] == pytest.approx(metrics["final/test/acc_chip_mean"])

    table = chip_eval(_chip_eval_cfg(run_dir=str(tmp_path / "run")))
    assert table["chip"][0]["mean"] == pytest.approx(metrics["final/test/acc_hard"])
    assert table["chip"][1]["mean"] == pytest.approx(res["mean"])  # same seeds, same draws
    assert json.loads((tmp_path / "run" / "chip_eval.json").read_text())["trained_with_adc"]

    summary = export_integer_run(tmp_path / "run", batch=64)
    assert summary["max_abs_diff"] == {
        "mapped_vs_integer_reference": 0.0,
        "integer_onnx_vs_integer_reference": 0.0,
    }
    assert (tmp_path / "run" / "export" / "model_integer.onnx").is_file()
    qdq = export_qdq_run(tmp_path / "run", batch=64)
    assert qdq["max_abs_diff"] == {
        "mapped_vs_integer_reference": 0.0,
        "qdq_vs_integer_reference": 0.0,
    }
    assert qdq["accuracy"]["qdq"] == summary["accuracy"]["integer_onnx"]


def test_ideal_arithmetic_and_noise_without_adc(tmp_path) -> None:
    base = ("phases=[warmup,baseline]", "baseline=all_analog", "platform.analog.adc=null")
    metrics = run(train_cfg(tmp_path, *base))
    assert metrics["final/accuracy_arithmetic"] == "ideal"
    assert "final/test/acc_chip_mean" not in metrics
    qdq = export_qdq_run(tmp_path / "run", batch=64)  # exact sums export too
    assert qdq["read_out"]["adc"] is None and set(qdq["max_abs_diff"].values()) == {0.0}
    with pytest.raises(ConfigError, match="train.noise=true needs an analog read-out"):
        run(train_cfg(tmp_path, *base, "train.noise=true", "force=true", run="noisy"))
    with pytest.raises(ConfigError, match="train.recalibrate_every must be an int >= 0"):
        run(train_cfg(tmp_path, *base, "train.recalibrate_every=-1", "force=true", run="neg"))
    with pytest.raises(ConfigError, match=r"train.noise_generator='philox' is not one of"):
        run(train_cfg(tmp_path, *base, "train.noise_generator=philox", "force=true", run="gen"))


def _chip_eval_cfg(**keys) -> OmegaConf:
    base = {"run_dir": None, "sweep_dir": None, "reference_dir": None, "force": False,
            "platform": "diana",
            "sigmas": [0, 1], "draws": 2, "seed": 0, "split": "test", "images": None,
            "threads": None}  # fmt: skip
    return OmegaConf.create({**base, **keys})


def test_chip_eval_of_a_sweep_tabulates_every_run_and_reuses_matching_results(
    tmp_path, capsys
) -> None:
    """sweep_dir=: one row per finished run in <sweep>/chip_eval.csv; σ = 0 of a chip-aware run
    and the ideal accuracy of an exact-sum run equal their training's own final evaluation; a
    second call reads the stored results, other settings or force=true evaluate again."""
    import csv

    base = ("phases=[warmup,baseline]", "baseline=all_analog", "eval.noise_draws=0")
    sweep = tmp_path / "sweep"
    aware = run(train_cfg(sweep, *base, run="aware"))
    exact = run(train_cfg(sweep, *base, "platform.analog.adc=null", run="exact"))
    (sweep / "unfinished").mkdir()  # no DONE marker: not a run of the table
    (sweep / "unfinished" / "metrics.json").write_text("{}")
    first = chip_eval(_chip_eval_cfg(sweep_dir=str(sweep)))
    rows = {Path(r["run_dir"]).name: r for r in first["runs"]}
    assert set(rows) == {"aware", "exact"} and not any(r["reused"] for r in rows.values())
    assert rows["aware"]["trained_with_adc"] and not rows["exact"]["trained_with_adc"]
    assert rows["aware"]["sigma_0_mean"] == pytest.approx(aware["final/test/acc_hard"])
    assert rows["exact"]["ideal"] == pytest.approx(exact["final/test/acc_hard"])
    with open(sweep / "chip_eval.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [Path(r["run_dir"]).name for r in table] == [Path(r["run_dir"]).name
                                                        for r in first["runs"]]  # fmt: skip
    assert float(table[0]["sigma_1_mean"]) == pytest.approx(first["runs"][0]["sigma_1_mean"])
    again = chip_eval(_chip_eval_cfg(sweep_dir=str(sweep)))
    assert all(r["reused"] for r in again["runs"])
    assert [r["sigma_1_mean"] for r in again["runs"]] == [r["sigma_1_mean"] for r in first["runs"]]
    more = chip_eval(_chip_eval_cfg(sweep_dir=str(sweep), draws=3))
    assert not any(r["reused"] for r in more["runs"])
    forced = chip_eval(_chip_eval_cfg(sweep_dir=str(sweep), draws=3, force=True))
    assert not any(r["reused"] for r in forced["runs"])
    # reference_dir: the chip-aware run against the exact-sum one of the same seed (here both
    # in one sweep): drop and gain from their own rows, one row per σ, a CSV
    compared = chip_eval(_chip_eval_cfg(sweep_dir=str(sweep), reference_dir=str(sweep), draws=3))
    runs = {Path(r["run_dir"]).name: r for r in compared["runs"]}
    assert all(r["reused"] for r in compared["runs"])
    assert [(r["network"], r["sigma_lsb"]) for r in compared["recovery"]] == [
        ("all_analog", 0.0), ("all_analog", 1.0)]  # fmt: skip
    at1 = compared["recovery"][1]
    exact_chip, aware_chip = runs["exact"]["sigma_1_mean"], runs["aware"]["sigma_1_mean"]
    assert at1["drop_pt"] == pytest.approx(100 * (runs["exact"]["ideal"] - exact_chip))
    assert at1["gain_pt"] == pytest.approx(100 * (aware_chip - exact_chip))
    with open(sweep / "chip_recovery.csv", newline="") as f:
        assert [row["sigma_lsb"] for row in csv.DictReader(f)] == ["0.0", "1.0"]
    # DIANA's relative noise (σ = |p|/snr): the σ = 1 column is labelled by its snr
    from odimo.hw.config import PLATFORM_CONF_DIR

    relative = OmegaConf.load(PLATFORM_CONF_DIR / "diana.yaml")
    relative.analog.noise.snr = 25
    capsys.readouterr()
    snr = chip_eval(
        _chip_eval_cfg(sweep_dir=str(sweep), reference_dir=str(sweep), draws=3, platform=relative)
    )
    assert [r["noise_snr"] for r in snr["runs"]] == [25.0, 25.0]
    assert [(r["sigma_lsb"], r["noise_snr"]) for r in snr["recovery"]] == [(0, 25), (1, 25)]
    assert snr["runs"][0]["sigma_1_mean"] != compared["runs"][0]["sigma_1_mean"]
    shown = capsys.readouterr().out
    assert "snr=25" in shown and "σ=1" not in shown and "σ=0" in shown
    assert {r["noise_snr"] for r in compared["runs"]} == {0.0}  # additive: σ in LSB
    with pytest.raises(ConfigError, match="reference_dir .*nope is not a directory"):
        chip_eval(
            _chip_eval_cfg(sweep_dir=str(sweep), reference_dir=str(tmp_path / "nope"), draws=3)
        )
    with pytest.raises(ConfigError, match="give sweep_dir=<sweep> too"):
        chip_eval(_chip_eval_cfg(run_dir=str(sweep / "aware"), reference_dir=str(sweep)))
    with pytest.raises(ConfigError, match="no chip-aware run of .* has an exact-sum run"):
        chip_eval(_chip_eval_cfg(sweep_dir=str(sweep), reference_dir=str(sweep / "aware"), draws=3))
    with pytest.raises(ConfigError, match="exactly one of run_dir"):
        chip_eval(_chip_eval_cfg(sweep_dir=str(sweep), run_dir=str(sweep / "aware")))
    with pytest.raises(ConfigError, match="holds no finished run"):
        chip_eval(_chip_eval_cfg(sweep_dir=str(sweep / "unfinished")))


def test_checkpoints_are_chosen_under_the_deployment_noise_only_in_chip_aware_training() -> None:
    """`train.select_under_noise`: with `train.noise=true` the deployment noise itself (not
    × `train.noise_scale`); without training noise, or switched off, none (noiseless choice)."""
    from odimo.hw import get_platform
    from odimo.pipeline.phases import selection_noise

    def noise(*overrides: str):
        cfg = train_cfg(Path("/unused"), *overrides)
        return selection_noise(cfg, get_platform(cfg.platform))

    assert noise() is None
    assert noise("train.noise=true").sigma_lsb == 1.0
    assert noise("train.noise=true", "train.noise_scale=2").sigma_lsb == 1.0
    assert noise("train.noise=true", "platform.analog.noise.sigma_lsb=0.5").sigma_lsb == 0.5
    assert noise("train.noise=true", "train.select_under_noise=false") is None
