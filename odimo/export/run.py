# SPDX-License-Identifier: Apache-2.0
"""Export a finished run: split network, integer weights, ONNX, cost report, checks.

Reads `<run_dir>/final/model.pt` (`odimo.models.save_mapped`) and `<run_dir>/config.yaml` (the
run's composed config) and writes `<run_dir>/export/` (see docs/export.md for the schemas):

    mapping.json        the mapping (odimo.mapping/1), layers in execution order
    cost_report.json    per-layer cycles and totals (same schema as the cost report task)
    split_model.pt      the split network's state dict (tensors only: weights_only=True loads it)
    split_model.json    its spec (model, platform, mapping, activation constants); rebuild with
                        odimo.export.load_split(<export dir>), no pickle involved
    weights.npz         integer weights, biases, scales, channel orders (odimo.export.integer)
    quant.json          quantizer constants and the layout of weights.npz (odimo.quant/1)
    model.onnx          the split network, opset 18, dynamic batch, no gather ops
    test_batch.npz      x float32 [N, C, H, W] and y int64 [N]: the first N test inputs
    summary.json        checks: output differences, accuracies, geometry, costs vs metrics.json
    README.md           what each file is and how to load it
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from odimo.errors import CheckpointError, ConfigError
from odimo.export.channel_plan import plan_channels, split_model
from odimo.export.integer import integer_export
from odimo.export.integer_reference import integer_reference
from odimo.export.onnx import ONNX_OPSET, export_onnx, gather_ops, run_onnx
from odimo.export.reference import exact_reference
from odimo.export.split_files import save_split
from odimo.hw import record_geometry
from odimo.io import atomic_path, atomic_write_text
from odimo.models import load_mapped
from odimo.nn.report import cost_report
from odimo.quant.adc import readouts

SUMMARY_FORMAT = "odimo.export/1"
METRIC_KEYS = {
    "latency_cycles": "final/cost/latency_hard_cycles",
    "energy_uj": "final/cost/energy_hard_uj",
}

LOADER_NOTE = """\
# Export of {run_dir}

| file | what |
|---|---|
| mapping.json | channel mapping (odimo.mapping/1), layers in execution order |
| cost_report.json | per-layer cycles and energy of the mapping, totals |
| split_model.pt / split_model.json | the split network: state dict (tensors only) + JSON spec |
| weights.npz / quant.json | integer weights, biases, scales; quantizer constants and layout |
| model.onnx | the split network, ONNX opset {opset}, input `input` [batch, C, H, W] |
| test_batch.npz | `x` float32, `y` int64: the first {batch} test inputs, as the model reads them |
| summary.json | output differences, accuracies and cost checks |

Load the PyTorch module (no pickle: a state dict read with weights_only=True and a JSON spec):

    from odimo.export import load_split
    model = load_split(".")

Run the ONNX model with graph optimisations disabled (see docs/export.md):

    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession("model.onnx", opts)
"""


def load_run_config(run_dir: Path) -> DictConfig:
    """The run's composed config (`config.yaml`), with a one-line error if it is unusable."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: the run dir must hold the run's config.yaml")
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # noqa: BLE001 - any YAML/OmegaConf failure reads the same
        raise ConfigError(f"{path} is not a readable config ({type(err).__name__})") from None
    for key in ("dataset.name", "dataset.datamodule", "model.name"):
        if OmegaConf.select(cfg, key) is None:
            raise ConfigError(f"{path} has no {key!r}")
    return cfg


def load_test_batch(cfg: DictConfig, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `size` test inputs and labels, exactly as the test loader yields them."""
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.dataset.datamodule)
    datamodule.setup("test")
    xs, ys, count = [], [], 0
    for x, y in datamodule.test_dataloader():
        xs.append(x)
        ys.append(y)
        count += len(y)
        if count >= size:
            break
    if not xs:
        raise ConfigError(f"dataset {cfg.dataset.name!r} has an empty test split")
    x = torch.cat(xs)[:size].to(torch.float32).numpy()
    y = torch.cat(ys)[:size].to(torch.int64).numpy()
    return x, y


@torch.no_grad()
def _logits(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    t = torch.from_numpy(x)
    return torch.cat([model(t[i : i + batch_size]) for i in range(0, len(t), batch_size)]).numpy()


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean()) if len(y) else float("nan")


def _metrics_check(run_dir: Path, report: dict) -> dict[str, Any]:
    """Compare the report's totals with the run's metrics.json (when it exists)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {"checked": False, "reason": "no metrics.json"}
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return {"checked": False, "reason": f"unreadable metrics.json ({type(err).__name__})"}
    out: dict[str, Any] = {"checked": True, "match": True}
    if "final/test/acc_hard" in metrics:  # on the whole test split (the export checks 256)
        out["run_test_acc_hard"] = float(metrics["final/test/acc_hard"])
    for key, metric in METRIC_KEYS.items():
        if metric not in metrics:
            out[key] = {"report": report[key], "metrics": None, "match": None}
            continue
        value = float(metrics[metric])
        ok = math.isclose(report[key], value, rel_tol=1e-9, abs_tol=1e-9)
        out[key] = {"report": report[key], "metrics": value, "match": ok}
        out["match"] = out["match"] and ok
    return out


PAIRS = (
    ("mapped", "split"),
    ("mapped", "onnx"),
    ("split", "onnx"),
    ("split", "exact"),
    ("onnx", "exact"),
    ("mapped", "exact"),
)


def _compare(
    model: nn.Module, split: nn.Module, onnx_path: Path, x: np.ndarray, y: np.ndarray
) -> dict[str, Any]:
    """Outputs of the mapped, split, ONNX and exact-reference networks on the test batch.

    `exact` is the mapped network in exact arithmetic (`odimo.export.reference`). The mapped
    model runs in eval mode, i.e. as the deployed network (one exactly accumulated conv per unit,
    `QuantConv2d.exact_forward`): it equals the split network and ONNX to the bit and does not
    depend on the batch it runs in (`mapped_batch_vs_single` = 0).
    """
    outs = {
        "mapped": _logits(model, x),
        "split": _logits(split, x),
        "onnx": run_onnx(onnx_path, x),
        "exact": (  # with the ADC on, the exact arithmetic is the int64 read-out reference
            _logits(integer_reference(model), x)
            if readouts(model)
            else _logits(exact_reference(model), x.astype(np.float64))
        ),
    }
    n = min(len(x), 32)
    single = {
        k: np.concatenate([_logits(m, x[i : i + 1]) for i in range(n)]) if n else x[:0]
        for k, m in (("mapped", model), ("split", split))
    }
    diffs = {f"{a}_vs_{b}": _max_diff(outs[a], outs[b]) for a, b in PAIRS}
    diffs.update({f"{k}_batch_vs_single": _max_diff(outs[k][:n], v) for k, v in single.items()})
    return {
        "max_abs_diff": diffs,
        "prediction_agreement": {
            f"{a}_vs_{b}": float((outs[a].argmax(1) == outs[b].argmax(1)).mean()) for a, b in PAIRS
        },
        "accuracy": {k: _accuracy(v, y) for k, v in outs.items()},
    }


def load_finished_run(run_dir: Path, batch: int):
    """(mapped model in eval mode, platform, mapping, run config, test inputs, labels) of a
    finished run, checked before anything is written: the folder, the model named in
    config.yaml, the batch size and the test data's shape (a missing dataset fails here)."""
    if not run_dir.is_dir():
        raise CheckpointError(f"run dir {run_dir} does not exist")
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    model, platform, mapping = load_mapped(run_dir / "final" / "model.pt")
    model.eval()
    cfg = load_run_config(run_dir)
    spec = model.spec
    if str(cfg.model.name) != spec.name:
        raise CheckpointError(
            f"{run_dir}: config.yaml says model {cfg.model.name!r}, "
            f"final/model.pt holds a {spec.name}"
        )
    x, y = load_test_batch(cfg, batch)
    if tuple(x.shape[1:]) != tuple(spec.input_size):
        raise ConfigError(
            f"the test data is {list(x.shape[1:])}, the model expects {list(spec.input_size)}"
        )
    return model, platform, mapping, cfg, x, y


def _write_mapping_and_cost(out: Path, model, platform, mapping, cfg) -> tuple[list, dict]:
    """mapping.json (in layer order) and cost_report.json of the mapped network."""
    spec = model.spec
    geometry = record_geometry(model, spec.input_size)
    mapping = mapping.ordered([g.name for g in geometry])
    mapping.save(out / "mapping.json")
    report = cost_report(
        geometry,
        mapping,
        platform,
        model=spec.name,
        dataset=str(cfg.dataset.name),
        input_size=spec.input_size,
        mapping_label=str(out / "mapping.json"),
    )
    _write_json(out / "cost_report.json", report)
    return geometry, report


def export_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    opset: int = ONNX_OPSET,
    batch: int = 256,
    dynamo: bool = False,
) -> dict:
    """Export a finished run (see module doc); returns the summary written to summary.json."""
    run_dir = Path(run_dir)
    model, platform, mapping, cfg, x, y = load_finished_run(run_dir, batch)
    spec = model.spec
    out = Path(out_dir) if out_dir is not None else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)

    geometry, report = _write_mapping_and_cost(out, model, platform, mapping, cfg)

    plan = plan_channels(model, platform.num_units)
    split = split_model(model, platform)
    save_split(out, split, model, platform)
    split_geometry = record_geometry(split, spec.input_size)
    if split_geometry != geometry:
        raise RuntimeError("internal error: the split network's geometry differs from the mapped")

    arrays, quant = integer_export(model, platform, plan)
    _write_npz(out / "weights.npz", **arrays)
    _write_json(out / "quant.json", quant)

    _write_npz(out / "test_batch.npz", x=x, y=y)
    ops = export_onnx(split, out / "model.onnx", spec.input_size, opset=opset, dynamo=dynamo)
    summary = {
        "format": SUMMARY_FORMAT,
        "run_dir": str(run_dir),
        "out_dir": str(out),
        "model": spec.name,
        "dataset": str(cfg.dataset.name),
        "input_size": list(spec.input_size),
        "batch": len(y),
        "onnx": {
            "opset": opset,
            "exporter": "dynamo" if dynamo else "torchscript",
            "ops": ops,
            "gather_ops": gather_ops(out / "model.onnx"),
        },
        **_compare(model, split, out / "model.onnx", x, y),
        "geometry_matches": True,
        "residual_spaces_permuted": sum(
            1 for s in plan.spaces if len(s.producers) > 1 and not s.is_identity
        ),
        "cost": {"latency_cycles": report["latency_cycles"], "energy_uj": report["energy_uj"]},
        "metrics_check": _metrics_check(run_dir, report),
    }
    _write_json(out / "summary.json", summary)
    atomic_write_text(
        out / "README.md", LOADER_NOTE.format(run_dir=run_dir, opset=opset, batch=len(y))
    )
    return summary


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)
