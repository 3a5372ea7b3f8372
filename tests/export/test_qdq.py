# SPDX-License-Identifier: Apache-2.0
"""QDQ ONNX: int8 weights with per-channel DequantizeLinear; onnxruntime equals the int64
reference to the bit (with and without the analog read-out, one and several row tiles)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from odimo.errors import ConfigError
from odimo.export.onnx import gather_ops, onnx_session
from odimo.export.qdq import QDQ_OPSET, export_qdq_onnx
from odimo.nn import quant_layers

from . import chip_mapped, inputs, onnx_reference_mapped, random_mapped

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def platform_of(model):
    return next(iter(quant_layers(model).values())).platform


def _export(model, path: Path):
    info = export_qdq_onnx(model, platform_of(model), path)
    return info, onnx.load(str(path))


@pytest.mark.parametrize(
    ("name", "kind", "rows"),
    [("res20", "random", 1152), ("res20", "random", 288), ("res20", "analog", 288),
     ("mbv1", "random", 1152)],
)  # fmt: skip
def test_qdq_onnx_equals_integer_reference(tmp_path: Path, name: str, kind: str, rows) -> None:
    model = chip_mapped(name, kind, rows)
    path = tmp_path / "model_qdq.onnx"
    info, proto = _export(model, path)
    assert proto.opset_import[0].version == QDQ_OPSET
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Clip"} <= set(info["ops"])
    assert not gather_ops(path)
    got, ref, mapped = onnx_reference_mapped(path, model, name)
    assert np.array_equal(got, ref)
    assert np.array_equal(ref, mapped)
    if rows == 288:  # the tiles' codes are summed: a ReduceSum after the read-out
        assert "ReduceSum" in info["ops"]


def test_qdq_onnx_without_read_out_equals_the_exact_network(tmp_path: Path) -> None:
    model, _ = random_mapped("res20", "random")
    path = tmp_path / "model_qdq.onnx"
    _export(model, path)
    got, ref, mapped = onnx_reference_mapped(path, model, "res20")
    assert np.array_equal(got, ref)
    assert np.array_equal(got, mapped)


def _dequantized_weights(proto) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Conv weight initializers read through a DequantizeLinear: codes, scale, axis."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:  # the exporter shares equal initializers through Identity
        if node.op_type == "Identity" and node.input[0] in inits:
            inits[node.output[0]] = inits[node.input[0]]
    out = {}
    for node in proto.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        codes = inits[node.input[0]]
        if codes.ndim == 4:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            out[node.input[0]] = (codes, inits[node.input[1]], axis)
    return out


def test_weights_are_int8_with_per_channel_scales(tmp_path: Path) -> None:
    model = chip_mapped("res20", "random", 1152)
    _, proto = _export(model, tmp_path / "model_qdq.onnx")
    weights = _dequantized_weights(proto)
    convs = sum(1 for n in proto.graph.node if n.op_type == "Conv")
    assert len(weights) == convs  # every conv reads int8 codes through a DequantizeLinear
    ternary = digital = 0
    for codes, scale, axis in weights.values():
        assert codes.dtype == np.int8 and axis == 0 and scale.shape == (codes.shape[0],)
        if set(np.unique(codes)) <= {-1, 0, 1} and (scale == 1).all():
            ternary += 1
        else:  # the 8-bit range 2^e: a power of two, one per layer
            assert np.abs(codes).max() <= 127 and len(set(scale.tolist())) == 1
            assert np.log2(scale[0]) == np.round(np.log2(scale[0]))
            digital += 1
    layers = quant_layers(model).values()
    analog = sum(1 for m in layers if bool((m.hard_assignment() == 1).any()))
    assert ternary == analog and digital == sum(
        1 for m in layers if bool((m.hard_assignment() == 0).any())
    )


def test_read_out_codes_are_the_chips_six_bits(tmp_path: Path) -> None:
    """The read-out's int8 codes stay in [-32, 31] and reach the clip (the ADC saturates)."""
    from onnx import helper

    model = chip_mapped("res20", "analog", 1152)
    path = tmp_path / "model_qdq.onnx"
    _, proto = _export(model, path)
    clips = [n.output[0] for n in proto.graph.node if n.op_type == "Clip"]
    reads = [
        o for o in clips
        if any(n.op_type == "DequantizeLinear" and n.input[0] == o for n in proto.graph.node)
    ]  # fmt: skip
    assert reads
    proto.graph.output.extend(helper.make_empty_tensor_value_info(o) for o in reads)
    onnx.save(proto, str(path))
    session = onnx_session(path)
    codes = session.run(reads, {"input": inputs("res20", 8).numpy()})
    assert all(c.dtype == np.int8 for c in codes)
    assert min(int(c.min()) for c in codes) == -32 and max(int(c.max()) for c in codes) == 31


def test_qdq_refuses_what_the_compilers_cannot_take(tmp_path: Path) -> None:
    model = chip_mapped("res20", "random")
    quant_layers(model)["backbone.bb_1_0.conv1"].kernel_size = (4, 4)
    with pytest.raises(ConfigError, match=r"layer .backbone\.bb_1_0\.conv1.: kernel \(4, 4\)"):
        export_qdq_onnx(model, platform_of(model), tmp_path / "model_qdq.onnx")
