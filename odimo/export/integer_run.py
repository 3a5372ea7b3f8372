# SPDX-License-Identifier: Apache-2.0
"""`format=integer_onnx` and `format=qdq` of the export task: a finished run's integer-arithmetic
ONNX forms and their checks.

- `integer_onnx`: `<out>/model_integer.onnx` (`odimo.export.integer_onnx`, the integerised
  float graph DIANA's compilers take) and `<out>/integer_summary.json`;
- `qdq`: `<out>/model_qdq.onnx` (`odimo.export.qdq`, int8 weights and Quantize/DequantizeLinear,
  opset 13) and `<out>/qdq_summary.json`.

Each summary holds, on the first `batch` test images, the max |difference| between the mapped
network's hard evaluation, the int64 reference (`odimo.export.integer_reference`) and
onnxruntime running the exported graph (all 0 when the arithmetic is exact), and the accuracy
of each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odimo.errors import ConfigError
from odimo.export.integer_onnx import export_integer_onnx
from odimo.export.integer_reference import float_layers, integer_reference
from odimo.export.onnx import ONNX_OPSET, onnx_session, run_onnx
from odimo.export.qdq import QDQ_OPSET, export_qdq_onnx
from odimo.export.run import load_finished_run
from odimo.io import atomic_write_text

#: format -> (ONNX file, summary file, writer, default opset)
FORMS = {
    "integer_onnx": ("model_integer.onnx", "integer_summary.json", export_integer_onnx, ONNX_OPSET),
    "qdq": ("model_qdq.onnx", "qdq_summary.json", export_qdq_onnx, QDQ_OPSET),
}


def export_checked_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    form: str = "integer_onnx",
    opset: int | None = None,
    batch: int = 256,
) -> dict[str, Any]:
    """Export `run_dir`'s network in `form` (a key of `FORMS`) and compare it (module doc)."""
    if form not in FORMS:
        raise ConfigError(f"unknown integer form {form!r} (choose from: {', '.join(FORMS)})")
    onnx_name, summary_name, write, default_opset = FORMS[form]
    run_dir = Path(run_dir)
    model, platform, _, _, x, y = load_finished_run(run_dir, batch)
    out = Path(out_dir) if out_dir is not None else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    path = out / onnx_name
    opset = default_opset if opset is None else opset
    info = write(model, platform, path, opset=opset)
    xt = torch.from_numpy(x)
    reference = integer_reference(model)
    with torch.no_grad():
        outs = {"mapped": model(xt).numpy(), "integer_reference": reference(xt).numpy()}
    outs[form] = run_onnx(onnx_session(path), x)
    pairs = (("mapped", "integer_reference"), (form, "integer_reference"))
    summary = {
        "run_dir": str(run_dir),
        "file": str(path),
        "format": form,
        "opset": opset,
        "batch": len(y),
        "ops": info["ops"],
        **({"annotated_convs": info["annotated_convs"]} if "annotated_convs" in info else {}),
        # layers whose input is off every power-of-two grid (average over a non-power-of-two
        # area): the reference runs them as the network does, not in int64
        "reference_float_layers": float_layers(reference),
        "read_out": platform.analog.to_config() if platform.analog is not None else None,
        "max_abs_diff": {
            f"{a}_vs_{b}": float(np.abs(outs[a] - outs[b]).max()) if len(y) else 0.0
            for a, b in pairs
        },
        "accuracy": {k: float((v.argmax(1) == y).mean()) for k, v in outs.items()},
    }
    atomic_write_text(out / summary_name, json.dumps(summary, indent=1) + "\n")
    return summary


def export_integer_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    opset: int = ONNX_OPSET,
    batch: int = 256,
) -> dict[str, Any]:
    """The integerised ONNX of a finished run and its checks (`export_checked_run`)."""
    return export_checked_run(run_dir, out_dir, form="integer_onnx", opset=opset, batch=batch)


def export_qdq_run(
    run_dir: str | Path, out_dir: str | Path | None = None, *, batch: int = 256
) -> dict[str, Any]:
    """The QDQ ONNX (opset 13) of a finished run and its checks (`export_checked_run`)."""
    return export_checked_run(run_dir, out_dir, form="qdq", batch=batch)
