# SPDX-License-Identifier: Apache-2.0
"""Integerised ONNX: onnxruntime equals the int64 reference and the mapped network to the bit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from odimo.errors import ConfigError
from odimo.export import split_model
from odimo.export.integer_onnx import check_patterns, export_integer_onnx
from odimo.nn import quant_layers

from . import chip_mapped, inputs, onnx_reference_mapped


def platform_of(model):
    return next(iter(quant_layers(model).values())).platform


@pytest.mark.parametrize(("kind", "rows"), [("random", 1152), ("random", 288)])
def test_split_network_with_adc_equals_mapped(kind: str, rows: int) -> None:
    """Permuted input channels (the split plan) keep the mapped layer's row tiles."""
    model = chip_mapped("res20", kind, rows)
    platform = platform_of(model)
    x = inputs("res20", 8)
    with torch.no_grad():
        assert torch.equal(split_model(model, platform)(x), model(x))


@pytest.mark.parametrize(("name", "rows"), [("res20", 1152), ("res20", 288), ("mbv1", 1152)])
def test_integer_onnx_equals_integer_reference(tmp_path: Path, name: str, rows: int) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = chip_mapped(name, "random", rows)
    path = tmp_path / "model_integer.onnx"
    info = export_integer_onnx(model, platform_of(model), path)
    assert {"Conv", "Floor", "Clip"} <= set(info["ops"])
    got, ref, mapped = onnx_reference_mapped(path, model, name)
    assert np.array_equal(got, ref)
    assert np.array_equal(ref, mapped)
    bits = json.loads(
        next(p.value for p in onnx.load(str(path)).metadata_props if p.key == "odimo.bits")
    )
    units = {b["unit"] for b in bits.values()}
    assert info["annotated_convs"] == len(bits) > 0 and "digital" in units
    if rows == 1152:  # untiled analog convs keep their ternary weights as one initializer
        analog = [b for b in bits.values() if b["unit"] == "analog"]
        assert analog and all(b["out_bits"] == 6 and b["weight_bits"] == 1.5 for b in analog)


@pytest.mark.parametrize(
    ("attr", "value", "words"),
    [("stride", (3, 3), "stride (3, 3)"), ("kernel_size", (4, 4), "kernel (4, 4)")],
)
def test_patterns_refuse_what_the_compilers_cannot_take(attr: str, value, words: str) -> None:
    model = chip_mapped("res20", "random")
    layer = quant_layers(model)["backbone.bb_1_0.conv1"]
    setattr(layer, attr, value)
    with pytest.raises(ConfigError, match=r"layer .backbone\.bb_1_0\.conv1.: " + re.escape(words)):
        check_patterns(model)


def test_patterns_refuse_grouped_analog_convs() -> None:
    model = chip_mapped("res20", "analog")
    quant_layers(model)["backbone.bb_1_0.conv1"].groups = 2
    with pytest.raises(ConfigError, match="groups=2 on the analog unit"):
        check_patterns(model)
