# SPDX-License-Identifier: Apache-2.0
"""`format=integer_onnx` of the export task: a finished run's integerised ONNX and its checks.

Writes `<out>/model_integer.onnx` (`odimo.export.integer_onnx`) and
`<out>/integer_summary.json`: on the first `batch` test images, the max |difference| between
the mapped network's hard evaluation, the int64 reference (`odimo.export.integer_reference`)
and onnxruntime running the integerised graph (all 0 when the arithmetic is exact), and the
accuracy of each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odimo.export.integer_onnx import export_integer_onnx
from odimo.export.integer_reference import float_layers, integer_reference
from odimo.export.onnx import ONNX_OPSET, onnx_session, run_onnx
from odimo.export.run import load_finished_run
from odimo.io import atomic_write_text


def export_integer_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    opset: int = ONNX_OPSET,
    batch: int = 256,
) -> dict[str, Any]:
    """Export `run_dir`'s network as integerised ONNX and compare it (see module doc)."""
    run_dir = Path(run_dir)
    model, platform, _, _, x, y = load_finished_run(run_dir, batch)
    out = Path(out_dir) if out_dir is not None else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model_integer.onnx"
    info = export_integer_onnx(model, platform, path, opset=opset)
    xt = torch.from_numpy(x)
    reference = integer_reference(model)
    with torch.no_grad():
        outs = {"mapped": model(xt).numpy(), "integer_reference": reference(xt).numpy()}
    outs["integer_onnx"] = run_onnx(onnx_session(path), x)
    pairs = (("mapped", "integer_reference"), ("integer_onnx", "integer_reference"))
    summary = {
        "run_dir": str(run_dir),
        "file": str(path),
        "batch": len(y),
        "ops": info["ops"],
        "annotated_convs": info["annotated_convs"],
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
    atomic_write_text(out / "integer_summary.json", json.dumps(summary, indent=1) + "\n")
    return summary
