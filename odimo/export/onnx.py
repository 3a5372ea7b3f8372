# SPDX-License-Identifier: Apache-2.0
"""ONNX export of a split network and the checks run on it.

Opset 18 (the default here): every op of the split network (Conv, Mul, Div, Clip, Floor, Add,
ReduceMean, Slice, Concat, Flatten/Reshape) exists in it unchanged since opset 13, and
onnxruntime >= 1.14 runs it. The batch axis is dynamic (`batch`); the input is named `input`
[batch, C, H, W] float32, the output `logits` [batch, classes] in the original class order.

Two exporters: the TorchScript-based one (`dynamo=False`, the default: 2-3 s for ResNet20 and
a flat graph) and the `torch.export`-based one (`dynamo=True`, ~5x slower here). Both give the
same graph semantics.

Run the model with graph optimisations disabled (`onnx_session` does): onnxruntime's default
level folds the per-channel output scales back into the conv weights, which reintroduces
summation-order-dependent rounding at quantisation ties (see `odimo.nn.split`).
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from odimo.errors import ConfigError

ONNX_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "logits"
#: Ops that index activations at run time; the split network must contain none of them.
GATHER_OPS = frozenset(
    {"Gather", "GatherElements", "GatherND", "Scatter", "ScatterElements", "ScatterND"}
)


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(
            f"ONNX export needs the {module!r} package (pip install 'odimo[export]')"
        ) from None


@torch.no_grad()
def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_size: tuple[int, int, int],
    opset: int = ONNX_OPSET,
    dynamo: bool = False,
) -> list[str]:
    """Write `model` (a split network, float32, CPU) to `path`; return its op types (sorted)."""
    _require("onnx")
    model = model.eval()
    param = next(itertools.chain(model.parameters(), model.buffers()))  # (QDQ: buffers only)
    example = torch.zeros(2, *input_size, dtype=param.dtype, device=param.device)
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (deprecation, tracer notes)
        if dynamo:
            batch = torch.export.Dim("batch", min=1)
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=True,
                opset_version=opset,
                external_data=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                verbose=False,
            )
        else:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
    return onnx_op_types(path)


def onnx_op_types(path: str | Path) -> list[str]:
    """Sorted distinct op types of an ONNX model's graph."""
    onnx = _require("onnx")
    return sorted({node.op_type for node in onnx.load(str(path)).graph.node})


def gather_ops(path: str | Path) -> list[str]:
    """The indexing ops (Gather, Scatter, ...) an ONNX graph contains (should be none)."""
    return [op for op in onnx_op_types(path) if op in GATHER_OPS]


def onnx_session(path: str | Path):
    """An onnxruntime CPU session with graph optimisations off (keeps the exact arithmetic)."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(path_or_session, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of an ONNX model (path or session) on float32 inputs [N, C, H, W]."""
    session = (
        onnx_session(path_or_session)
        if isinstance(path_or_session, (str, Path))
        else path_or_session
    )
    x = np.ascontiguousarray(x, dtype=np.float32)
    outs = [
        session.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + batch_size]})[0]
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)
