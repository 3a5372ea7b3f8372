# SPDX-License-Identifier: Apache-2.0
"""Export task: the deployable files of a finished run (see `odimo.export.run`)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from odimo.errors import ConfigError
from odimo.export import export_run
from odimo.export.integer_run import FORMS, export_checked_run


def run(cfg: DictConfig) -> dict:
    """Export `cfg.run_dir` into `cfg.out_dir` (default `<run_dir>/export`); print a summary."""
    if OmegaConf.is_missing(cfg, "run_dir") or cfg.run_dir in (None, ""):
        raise ConfigError("run_dir is required: python tasks/export.py run_dir=<finished run dir>")
    try:
        opset, batch, dynamo = int(cfg.opset), int(cfg.batch), bool(cfg.dynamo)
    except (TypeError, ValueError):
        raise ConfigError(
            f"opset and batch must be integers, got {cfg.opset!r}, {cfg.batch!r}"
        ) from None
    fmt = str(cfg.get("format", "onnx"))
    if fmt in FORMS:  # the QDQ form is always opset 13 (its per-channel Q/DQ ops' opset)
        return report_integer(export_checked_run(
            str(cfg.run_dir), None if cfg.out_dir is None else str(cfg.out_dir),
            form=fmt, opset=opset if fmt == "integer_onnx" else None, batch=batch,
        ))  # fmt: skip
    if fmt != "onnx":
        raise ConfigError(f"unknown format {fmt!r} (choose from: onnx, {', '.join(FORMS)})")
    summary = export_run(
        str(cfg.run_dir),
        None if cfg.out_dir is None else str(cfg.out_dir),
        opset=opset,
        batch=batch,
        dynamo=dynamo,
    )
    diff, acc = summary["max_abs_diff"], summary["accuracy"]
    check = summary["metrics_check"]
    cost_note = (
        "matches metrics.json"
        if check.get("match")
        else "DIFFERS from metrics.json"
        if check.get("checked")
        else "(no metrics.json)"
    )
    run_acc = ""
    if "run_test_acc_hard" in check:
        run_acc = f"  (run's test acc, whole test split: {check['run_test_acc_hard']:.4f})"
    print(
        f"exported {summary['model']} on {summary['dataset']} to {summary['out_dir']}\n"
        f"  max |diff| mapped-split {diff['mapped_vs_split']:.3g}  split-onnx "
        f"{diff['split_vs_onnx']:.3g}  mapped-onnx {diff['mapped_vs_onnx']:.3g}\n"
        f"  accuracy on {summary['batch']} test inputs: mapped {acc['mapped']:.4f}  split "
        f"{acc['split']:.4f}  onnx {acc['onnx']:.4f}{run_acc}\n"
        f"  latency {summary['cost']['latency_cycles']:.1f} cycles, energy "
        f"{summary['cost']['energy_uj']:.4f} µJ {cost_note}"
    )
    return summary


def report_integer(summary: dict) -> dict:
    """Print the integer forms' checks (integerised or QDQ ONNX; one line each)."""
    diff, acc, form = summary["max_abs_diff"], summary["accuracy"], summary["format"]
    annotated = summary.get("annotated_convs")
    note = f" ({annotated} convs annotated)" if annotated is not None else ""
    print(
        f"wrote {summary['file']}{note}\n"
        f"  max |diff| on {summary['batch']} test inputs: mapped vs int64 reference "
        f"{diff['mapped_vs_integer_reference']:.3g}, onnxruntime vs int64 reference "
        f"{diff[f'{form}_vs_integer_reference']:.3g}\n"
        f"  accuracy: mapped {acc['mapped']:.4f}  reference {acc['integer_reference']:.4f}  "
        f"onnx {acc[form]:.4f}"
    )
    return summary
