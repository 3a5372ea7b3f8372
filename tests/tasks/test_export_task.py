# SPDX-License-Identifier: Apache-2.0
"""The export task end to end: a fake finished run, every output file, the entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from odimo.errors import CheckpointError, ConfigError
from odimo.export import load_split, run_onnx
from odimo.export.onnx import GATHER_OPS
from odimo.hw import Diana
from odimo.models import ModelSpec, build_model, save_mapped
from odimo.nn import Mapping, NetworkCost, apply_mapping, quant_layers
from odimo.tasks.export import run

ROOT = Path(__file__).resolve().parents[2]
FILES = (
    "mapping.json",
    "cost_report.json",
    "split_model.pt",
    "split_model.json",
    "weights.npz",
    "quant.json",
    "model.onnx",
    "test_batch.npz",
    "summary.json",
    "README.md",
)
REPORT_LAYER_KEYS = {
    "name",
    "c_in",
    "c_out",
    "k_x",
    "k_y",
    "stride",
    "groups",
    "o_x",
    "o_y",
    "operator_choice",
    "ch_digital",
    "ch_analog",
    "cycles_digital",
    "cycles_analog",
    "latency_cycles",
    "energy_mw_cycles",
}


@torch.no_grad()
def _fake_run(run_dir: Path) -> dict:
    """A finished run of a small mapped res20 on digits: model.pt, config.yaml, metrics.json."""
    platform = Diana()
    spec = ModelSpec("res20", (1, 8, 8), 10)
    model = build_model(spec, "mapped", platform)
    g = torch.Generator().manual_seed(0)
    layers = {}
    for name, layer in quant_layers(model).items():
        layer.weight.copy_(
            torch.randn(layer.weight.shape, generator=g) * (2 / layer.weight[0].numel()) ** 0.5
        )
        layer.bias.normal_(0, 0.1, generator=g)
        layer.init_quantizers()
        layers[name] = tuple(torch.randint(0, 2, (layer.out_channels,), generator=g).tolist())
    apply_mapping(model, Mapping(platform.name, platform.unit_names, layers))
    save_mapped(run_dir / "final" / "model.pt", model, platform)
    dataset = OmegaConf.load(ROOT / "conf" / "dataset" / "digits.yaml")
    dataset.datamodule.size = 8  # the digits at their original size, as the model above
    cfg = OmegaConf.create(
        {"seed": 0, "platform": "diana", "model": {"name": "res20"}, "dataset": dataset}
    )
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    cost = NetworkCost(model, platform, spec.input_size).summary(soft=False)
    metrics = {
        "final/cost/latency_hard_cycles": cost["latency_cycles"],
        "final/cost/energy_hard_uj": cost["energy_uj"],
        "final/test/acc_hard": 0.1,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics) + "\n")
    return metrics


def _cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="export", overrides=list(overrides))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    run_dir = tmp_path_factory.mktemp("run")
    metrics = _fake_run(run_dir)
    summary = run(_cfg(f"run_dir={run_dir}"))
    return run_dir, metrics, summary


def test_every_file_is_written(exported) -> None:
    run_dir, _, summary = exported
    out = run_dir / "export"
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    mapping = Mapping.load(out / "mapping.json")
    assert mapping.platform == "diana" and list(mapping.layers)[0] == "conv1"
    quant = json.loads((out / "quant.json").read_text())
    weights = np.load(out / "weights.npz")
    for entry in quant["layers"]:
        for info in entry["units"].values():
            assert info["weight"] in weights and info["bias"] in weights


def test_cost_report_matches_metrics(exported) -> None:
    run_dir, metrics, summary = exported
    report = json.loads((run_dir / "export" / "cost_report.json").read_text())
    assert report["model"] == "res20" and report["dataset"] == "digits"
    assert report["input_size"] == [1, 8, 8] and len(report["layers"]) == 22
    assert set(report["layers"][0]) == REPORT_LAYER_KEYS
    assert report["latency_cycles"] == pytest.approx(
        metrics["final/cost/latency_hard_cycles"], rel=1e-12
    )
    assert report["energy_uj"] == pytest.approx(metrics["final/cost/energy_hard_uj"], rel=1e-12)
    assert summary["metrics_check"]["checked"] and summary["metrics_check"]["match"]


def run_dir_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_test_batch_and_onnx(exported) -> None:
    run_dir, _, summary = exported
    out = run_dir / "export"
    batch = np.load(out / "test_batch.npz")
    x, y = batch["x"], batch["y"]
    assert x.shape == (256, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert summary["onnx"]["opset"] == 18 and summary["onnx"]["gather_ops"] == []
    assert not set(summary["onnx"]["ops"]) & GATHER_OPS
    logits = run_onnx(out / "model.onnx", x)
    onnx_acc = float((logits.argmax(1) == y).mean())
    assert onnx_acc == summary["accuracy"]["onnx"] == summary["accuracy"]["split"]
    diff, agree = summary["max_abs_diff"], summary["prediction_agreement"]
    assert diff["split_vs_onnx"] <= 1e-5 and diff["split_batch_vs_single"] == 0.0
    assert diff["split_vs_exact"] <= 1e-5 and diff["onnx_vs_exact"] <= 1e-5
    assert summary["accuracy"]["exact"] == onnx_acc
    # The mapped model in eval mode is the deployed network, exactly accumulated: it equals
    # the split network and ONNX (ISSUE: max abs difference <= 1e-5) in any batch.
    assert diff["mapped_vs_split"] <= 1e-5 and diff["mapped_vs_onnx"] <= 1e-5
    assert diff["mapped_batch_vs_single"] == 0.0 and agree["mapped_vs_onnx"] == 1.0
    assert summary["accuracy"]["mapped"] == onnx_acc
    run_acc = summary["metrics_check"]["run_test_acc_hard"]
    assert run_acc == pytest.approx(run_dir_metrics(run_dir)["final/test/acc_hard"])
    assert summary["geometry_matches"] and summary["residual_spaces_permuted"] >= 1


def test_split_model_file_loads(exported) -> None:
    run_dir, _, _ = exported
    out = run_dir / "export"
    split = load_split(out)  # state dict (weights_only=True) + JSON spec, no pickle
    assert all(
        isinstance(v, torch.Tensor)
        for v in torch.load(out / "split_model.pt", weights_only=True).values()
    )
    x = torch.from_numpy(np.load(out / "test_batch.npz")["x"][:16])
    with torch.no_grad():
        got = split(x).numpy()
    assert np.array_equal(got, run_onnx(out / "model.onnx", x.numpy()))


def test_missing_or_corrupt_inputs(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        run(_cfg(f"run_dir={tmp_path / 'nope'}"))
    with pytest.raises(CheckpointError, match="does not exist"):
        run(_cfg(f"run_dir={tmp_path}"))  # no final/model.pt
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        run(_cfg(f"run_dir={tmp_path}"))
    with pytest.raises(ConfigError, match="run_dir is required"):
        run(_cfg())


def test_entry_point(exported, tmp_path: Path) -> None:
    run_dir, _, _ = exported
    out = tmp_path / "cli_export"
    ok = subprocess.run(
        [sys.executable, "tasks/export.py", f"run_dir={run_dir}", f"out_dir={out}", "batch=32"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert (out / "model.onnx").is_file() and "exported res20" in ok.stdout
    assert not (ROOT / "outputs").exists() or not any((ROOT / "outputs").glob("**/export*"))
    bad = subprocess.run(
        [sys.executable, "tasks/export.py", f"run_dir={tmp_path / 'missing'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "does not exist" in lines[0]


def test_qdq_format(exported, tmp_path: Path) -> None:
    """format=qdq: model_qdq.onnx (opset 13) and its checks, equal to the int64 reference."""
    run_dir, _, _ = exported
    out = tmp_path / "qdq"
    summary = run(_cfg(f"run_dir={run_dir}", f"out_dir={out}", "format=qdq", "batch=32"))
    assert summary["opset"] == 13 and summary["batch"] == 32
    assert summary["max_abs_diff"] == {
        "mapped_vs_integer_reference": 0.0,
        "qdq_vs_integer_reference": 0.0,
    }
    assert sorted(p.name for p in out.iterdir()) == ["model_qdq.onnx", "qdq_summary.json"]
    assert json.loads((out / "qdq_summary.json").read_text()) == json.loads(json.dumps(summary))
    with pytest.raises(ConfigError, match="unknown format 'qdq8'.*integer_onnx, qdq"):
        run(_cfg(f"run_dir={run_dir}", "format=qdq8"))
