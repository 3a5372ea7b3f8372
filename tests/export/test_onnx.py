# SPDX-License-Identifier: Apache-2.0
"""ONNX export of the split network: no gather ops, same outputs in onnxruntime, dynamic batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from odimo.export import export_onnx, gather_ops, onnx_session, run_onnx, split_model
from odimo.export.onnx import GATHER_OPS

from . import SPECS, exact_reference, inputs, random_mapped


@pytest.mark.parametrize("name", list(SPECS))
def test_onnx_matches_split(name: str, tmp_path: Path) -> None:
    model, platform = random_mapped(name, "random")
    split = split_model(model, platform)
    path = tmp_path / "model.onnx"
    ops = export_onnx(split, path, SPECS[name].input_size)
    assert not set(ops) & GATHER_OPS and gather_ops(path) == []
    assert {"Conv", "Floor", "Clip", "Concat"} <= set(ops)
    x = inputs(name, 5)
    with torch.no_grad():
        expected = split(x).numpy()
        mapped = model(x).numpy()  # eval mode: the deployed network, exactly accumulated
        reference = exact_reference(model)(x.double()).numpy()
    session = onnx_session(path)
    got = run_onnx(session, x.numpy())
    assert got.shape == (5, SPECS[name].num_classes)
    assert np.abs(got - expected).max() <= 1e-5  # same exact arithmetic: in practice 0
    assert np.abs(got - mapped).max() <= 1e-5
    assert np.abs(got - reference).max() <= 1e-4
    assert np.array_equal(run_onnx(session, x[:2].numpy()), got[:2])  # dynamic batch


@pytest.mark.slow
def test_dynamo_exporter(tmp_path: Path) -> None:
    """The torch.export-based exporter (~15 s, so marked slow)."""
    model, platform = random_mapped("res20", "random")
    split = split_model(model, platform)
    path = tmp_path / "model.onnx"
    export_onnx(split, path, SPECS["res20"].input_size, dynamo=True)
    assert gather_ops(path) == []
    x = inputs("res20", 3)
    with torch.no_grad():
        expected = split(x).numpy()
    assert np.abs(run_onnx(path, x.numpy()) - expected).max() <= 1e-5
