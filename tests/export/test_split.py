# SPDX-License-Identifier: Apache-2.0
"""split_model: equal outputs, absorbed permutations, one real conv per unit, same geometry."""

from __future__ import annotations

import copy

import pytest
import torch

from odimo.errors import ConfigError
from odimo.export import plan_channels, reflected_order, split_layers, split_model
from odimo.export.reference import exact_reference as shipped_reference
from odimo.hw import GeometryTable, record_geometry
from odimo.models import build_model
from odimo.nn import model_mapping, quant_layers
from odimo.nn.split import ExportActQuant, SplitConv2d, UnitConv2d, unit_segments
from odimo.quant import UintActPact

from . import MAPPINGS, SPECS, exact_reference, inputs, random_mapped

CASES = [(name, kind) for name in SPECS for kind in MAPPINGS]


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_split_equals_mapped(name: str, kind: str) -> None:
    """Split == the mapped network in eval (both exact accumulations) == exact arithmetic."""
    model, platform = random_mapped(name, kind)
    x = inputs(name)
    with torch.no_grad():
        mapped = model(x)
        assert (split_model(model, platform)(x) - mapped).abs().max().item() <= 1e-5
        singles = torch.cat([model(x[i : i + 1]) for i in range(len(x))])
        assert torch.equal(singles, mapped)  # independent of the batch it runs in
        reference = exact_reference(model)(x.double())
        split64 = split_model(copy.deepcopy(model).double(), platform)(x.double())
        assert (split64 - reference).abs().max().item() <= 1e-9
        split32 = split_model(model, platform)(x)
        if kind == "digital":  # integer-valued accumulation + one division: exact in float32
            assert (split32.double() - reference).abs().max().item() <= 1e-5
        assert split32.argmax(1).tolist() == reference.argmax(1).tolist()


@pytest.mark.parametrize("name", list(SPECS))
def test_shipped_reference_is_exact(name: str) -> None:
    """The integer-built float64 reference equals the mapped layers run in float64.

    Not to 1e-9: the shipped one uses the float32 ternary scales exp(θ) of the model, the
    float64 copy recomputes exp(θ) in float64 (relative difference ~1e-8).
    """
    model, _ = random_mapped(name, "random")
    x = inputs(name).double()
    with torch.no_grad():
        shipped = shipped_reference(model)(x)
        independent = exact_reference(model)(x)
    assert (shipped - independent).abs().max().item() <= 1e-5


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_split_layers_and_geometry(name: str, kind: str) -> None:
    model, platform = random_mapped(name, kind)
    split = split_model(model, platform)
    mapping = model_mapping(model, platform)
    layers = split_layers(split)
    assert list(layers) == list(quant_layers(model))
    for layer_name, layer in layers.items():
        counts = mapping.counts(layer_name)
        for u, unit in enumerate(platform.unit_names):
            conv = getattr(layer, unit)
            if counts[u] == 0:
                assert conv is None  # no zero-width conv
            else:
                assert isinstance(conv, UnitConv2d) and conv.out_channels == counts[u]
                assert conv.cost_exempt
        assert layer.weight is None
    assert not any(isinstance(m, UintActPact) for m in split.modules())
    geometry = record_geometry(model, SPECS[name].input_size)
    assert record_geometry(split, SPECS[name].input_size) == geometry
    names = [g.name for g in geometry]
    table = GeometryTable(geometry, dtype=torch.float64)
    split_counts = torch.stack([layers[n].unit_counts() for n in names]).double()
    mapped_cost = platform.evaluate(mapping.counts_tensor(names), table)
    split_cost = platform.evaluate(split_counts, table)
    assert torch.equal(split_cost.latency_cycles, mapped_cost.latency_cycles)
    assert torch.equal(split_cost.energy_mw_cycles, mapped_cost.energy_mw_cycles)


@pytest.mark.parametrize("name", ["res20", "res18"])
def test_random_mapping_permutes_residual_spaces(name: str) -> None:
    model, platform = random_mapped(name, "random")
    plan = plan_channels(model)
    residual = [s for s in plan.spaces if len(s.producers) > 1]
    assert residual and any(not s.is_identity for s in residual)
    for space in residual:  # the first producer is plain: digital block, then analog
        first = model.get_submodule(space.producers[0]).assignment.tolist()
        assert len(unit_segments(first, space.order)) <= 2
    split = split_model(model, platform)
    # later producers of a shared space need slices: the segments path is exercised
    assert any(len(layer.segments) > 2 for layer in split_layers(split).values())
    # input and classifier keep the original order
    assert plan.in_order(next(iter(plan.input_space))) == tuple(range(SPECS[name].input_size[0]))
    assert plan.out_order("fc") == tuple(range(SPECS[name].num_classes))


def test_mbv1_depthwise_follows_its_space() -> None:
    model, platform = random_mapped("mbv1", "random")
    split = split_model(model, platform)
    plan = plan_channels(model)
    for name, layer in split_layers(split).items():
        if layer.groups > 1:
            assert layer.analog is None and layer.digital.groups == layer.out_channels
            assert layer.in_order == layer.out_order == plan.out_order(name)
        else:
            assert layer.in_order == plan.in_order(name)


def test_split_is_batch_invariant() -> None:
    """Exact accumulation: a sample's output does not depend on the batch around it."""
    model, platform = random_mapped("res20", "random")
    split = split_model(model, platform)
    x = inputs("res20", 6)
    with torch.no_grad():
        batched = split(x)
        single = torch.cat([split(x[i : i + 1]) for i in range(len(x))])
    assert torch.equal(batched, single)


def test_reflected_order() -> None:
    a = [0, 1, 0, 1, 1, 0]
    b = [1, 1, 0, 0, 1, 0]
    order = reflected_order([a, b], 2)
    assert [a[c] for c in order] == [0, 0, 0, 1, 1, 1]  # first producer: digital first
    assert len(unit_segments(b, order)) <= 3
    assert reflected_order([a], 2) == (0, 2, 5, 1, 3, 4)


def test_split_conv_names_and_repr() -> None:
    model, platform = random_mapped("res20", "random")
    split = split_model(model, platform)
    keys = split.state_dict().keys()
    assert "conv1.digital.weight" in keys or "conv1.analog.weight" in keys
    assert not any(k.endswith(("conv1.weight", ".assignment")) for k in keys)
    text = repr(split.conv1)
    assert text.startswith("SplitConv2d(") and "3, 16, kernel_size=(3, 3)" in text
    assert "digital=" in text and "analog=" in text
    assert isinstance(split.input_act, ExportActQuant)
    assert isinstance(split.conv1, SplitConv2d) and isinstance(split.conv1, torch.nn.Conv2d)


def test_split_needs_the_mapped_form() -> None:
    model = build_model(SPECS["res20"], "search", random_mapped("res20", "digital")[1])
    with pytest.raises(ConfigError, match="mapped"):
        split_model(model, random_mapped("res20", "digital")[1])
