# SPDX-License-Identifier: Apache-2.0
"""Deployable export of a mapped network: split convs, integer weights, ONNX, checks.

- `split_model`: the mapped network with one real conv per compute unit and every channel
  permutation absorbed into weights (`odimo.export.channel_plan`).
- `integer_export`: integer weights/biases/scales and quantizer constants
  (`odimo.export.integer`).
- `export_onnx`: the split network as ONNX (`odimo.export.onnx`).
- `export_run`: all of it for a finished run dir (`odimo.export.run`).
"""

from odimo.export.channel_plan import (
    ChannelPlan,
    ChannelSpace,
    plan_channels,
    reflected_order,
    split_layers,
    split_model,
)
from odimo.export.integer import integer_export
from odimo.export.onnx import ONNX_OPSET, export_onnx, gather_ops, onnx_session, run_onnx
from odimo.export.run import export_run
from odimo.export.split_files import load_split, save_split

__all__ = [
    "ONNX_OPSET",
    "ChannelPlan",
    "ChannelSpace",
    "export_onnx",
    "export_run",
    "gather_ops",
    "integer_export",
    "load_split",
    "onnx_session",
    "plan_channels",
    "reflected_order",
    "run_onnx",
    "save_split",
    "split_layers",
    "split_model",
]
