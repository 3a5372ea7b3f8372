# SPDX-License-Identifier: Apache-2.0
"""Export of Darkside's operator-choice slots: the cluster's share a conv over every input,
the DWE's share a real depthwise conv (group = its channels) on its own input channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from odimo.errors import ConfigError
from odimo.export import export_onnx, gather_ops, load_split, run_onnx, save_split, split_model
from odimo.hw import get_platform, record_geometry
from odimo.models import ModelSpec, build_model, searchable_names
from odimo.nn import apply_mapping, quant_layers
from odimo.nn.baselines import baseline_mapping
from odimo.nn.operator_split import SplitOperatorConv2d, depthwise_rows, embed_depthwise

SPEC = ModelSpec("darkside_mbv1", (3, 32, 32), 10, (("width", 8),))


def mapped_darkside(kind: str, seed: int = 0) -> nn.Module:
    """The width-8 Darkside network, mapped: a baseline by name or a random per-channel split."""
    torch.manual_seed(seed)
    platform = get_platform("darkside")
    model = build_model(SPEC, "mapped", platform)
    for layer in quant_layers(model).values():
        layer.init_quantizers()
    slots = searchable_names(model)
    geometry = record_geometry(model, SPEC.input_size)
    base = "all_conv" if kind == "mixed" else kind
    apply_mapping(model, baseline_mapping(base, geometry, platform, slots))
    if kind == "mixed":
        g = torch.Generator().manual_seed(seed + 1)
        for name in slots:
            layer = model.get_submodule(name)
            layer.set_assignment(torch.randint(0, 2, (layer.out_channels,), generator=g))
    return model.eval()


def conv_nodes(path: Path) -> dict[str, tuple[tuple[int, ...], int]]:
    """ONNX Conv nodes by their weight's name: (weight shape, group)."""
    import onnx

    graph = onnx.load(str(path)).graph
    shapes = {i.name: tuple(i.dims) for i in graph.initializer}
    nodes = {}
    for node in graph.node:
        if node.op_type == "Conv":
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            nodes[node.input[1]] = (shapes[node.input[1]], group)
    return nodes


@pytest.mark.parametrize("kind", ["mixed", "all_conv", "all_depthwise"])
def test_slot_exports_a_conv_and_a_depthwise_conv(kind: str, tmp_path: Path) -> None:
    model = mapped_darkside(kind)
    platform = get_platform("darkside")
    split = split_model(model, platform)
    path = tmp_path / "model.onnx"
    export_onnx(split, path, SPEC.input_size)
    assert gather_ops(path) == []
    nodes = conv_nodes(path)
    slots = searchable_names(model)
    assert len(slots) == 8
    for name in slots:
        layer = model.get_submodule(name)
        c = layer.out_channels
        k, m = (int((layer.assignment == u).sum()) for u in (0, 1))  # cluster, dwe
        expected = {}
        if k:
            expected[f"{name}.cluster.weight"] = ((k, c, 3, 3), 1)
        if m:
            expected[f"{name}.dwe.weight"] = ((m, 1, 3, 3), m)
        assert {w: v for w, v in nodes.items() if w.startswith(name + ".")} == expected
    x = torch.rand(6, *SPEC.input_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        hard = model(x).numpy()  # the mapped network's hard evaluation
    assert np.abs(run_onnx(path, x.numpy()) - hard).max() <= 1e-5
    if kind == "mixed":  # the multi-slice input path is exercised too
        runs = [len(r) for m in split.modules() if isinstance(m, SplitOperatorConv2d)
                for r in m.in_runs.values()]  # fmt: skip
        assert max(runs) > 1


def test_split_slot_keeps_geometry_and_round_trips(tmp_path: Path) -> None:
    model = mapped_darkside("mixed", seed=4)
    platform = get_platform("darkside")
    split = split_model(model, platform)
    assert record_geometry(split, SPEC.input_size) == record_geometry(model, SPEC.input_size)
    save_split(tmp_path, split, model, platform)
    x = torch.rand(3, *SPEC.input_size)
    with torch.no_grad():
        assert torch.equal(load_split(tmp_path)(x), split(x))


def test_mixed_slots_read_few_slices() -> None:
    """One key for a slot's input and output spaces: the DWE share of the first slot of a chain
    reads one slice, far fewer than one per run of depthwise channels in channel order."""
    split = split_model(mapped_darkside("mixed", seed=2), get_platform("darkside"))
    slots = [m for m in split.modules() if isinstance(m, SplitOperatorConv2d)]
    assert [len(s.in_runs[1]) for s in slots][:4] == [1, 1, 1, 1]
    assert sum(len(s.in_runs[1]) for s in slots) < sum(s.out_channels for s in slots) // 16


def test_depthwise_rows_takes_the_filters_and_refuses_other_taps() -> None:
    dw = torch.randn(6, 1, 3, 3)
    full = embed_depthwise(dw)
    rows = torch.tensor([4, 1, 3])
    assert torch.equal(depthwise_rows(full, rows), dw[rows])
    full[4, 2, 1, 1] = 0.5
    with pytest.raises(ConfigError, match="outside its own input channel"):
        depthwise_rows(full, rows)


class _OddQuant(nn.Module):
    """A weight quantizer the export has no integer form for."""

    def step(self) -> torch.Tensor:
        return torch.tensor(1.0)

    def integer(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.round()


def test_unknown_weight_format_is_an_error() -> None:
    model = mapped_darkside("mixed")
    model.get_submodule(searchable_names(model)[0]).weight_quants[1] = _OddQuant()
    with pytest.raises(ConfigError, match="unit dwe: weight format .* has no integer form"):
        split_model(model, get_platform("darkside"))


@pytest.mark.parametrize("form", ["integer", "qdq"])
def test_integer_forms_run_the_depthwise_share_on_its_codes(form: str, tmp_path: Path) -> None:
    from odimo.export.integer_onnx import export_integer_onnx
    from odimo.export.qdq import export_qdq_onnx

    model = mapped_darkside("mixed", seed=5)
    path = tmp_path / f"{form}.onnx"
    export = export_integer_onnx if form == "integer" else export_qdq_onnx
    export(model, get_platform("darkside"), path)
    import onnx

    graph = onnx.load(str(path)).graph
    groups = sorted(
        next((a.i for a in n.attribute if a.name == "group"), 1)
        for n in graph.node
        if n.op_type == "Conv" and "slot" in n.name and "dwe" in n.name
    )
    assert groups == sorted(int((model.get_submodule(n).assignment == 1).sum())
                            for n in searchable_names(model))  # fmt: skip
    x = torch.rand(4, *SPEC.input_size)
    with torch.no_grad():
        hard = model(x).numpy()
    assert np.abs(run_onnx(path, x.numpy()) - hard).max() <= 1e-5


def test_integer_arrays_store_the_depthwise_filters() -> None:
    """weights.npz / quant.json: the DWE rows are [m, 1, 3, 3] filters of their own input
    channels, whose real values are the mapped slot's fake-quantized depthwise filters."""
    from odimo.export.integer import integer_export

    model = mapped_darkside("mixed", seed=6)
    arrays, quant = integer_export(model, get_platform("darkside"))
    entries = {e["name"]: e for e in quant["layers"]}
    for name in searchable_names(model):
        layer = model.get_submodule(name)
        info = entries[name]["units"]["dwe"]
        assert (
            info["operator"] == "depthwise3x3"
            and "operator" not in entries[name]["units"]["cluster"]
        )
        rows = torch.from_numpy(arrays[info["channels"]])
        codes = torch.from_numpy(arrays[info["weight"]]).float()
        assert codes.shape == (len(rows), 1, 3, 3) and len(rows) == int(layer.assignment.sum())
        real = codes * 2.0 ** info["range_exp"] / info["levels"]
        with torch.no_grad():
            filters = layer.weight_quants[1](layer.dw_weight)
        assert torch.equal(real, filters[rows])
