# SPDX-License-Identifier: Apache-2.0
"""The three networks: the method's §8 geometry, all forms, BatchNorm folding, form conversion."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from odimo.errors import CheckpointError, ConfigError
from odimo.hw import LayerGeometry, record_geometry
from odimo.models import (
    FORMS,
    ModelSpec,
    build_model,
    fold_float_into,
    is_quantized,
    searchable_names,
    to_mapped,
)
from odimo.nn import (
    Conv2dBN,
    MappedConv2d,
    SearchConv2d,
    apply_mapping,
    hard_mapping,
    model_mapping,
    search_layers,
)
from odimo.nn.mapping import quant_layers
from odimo.quant import QuantAdd, UintActPact
from tests.reference import REFERENCE_SPECS

# Method §8, verbatim: `name c_in→c_out k/s/g @o_x×o_y`, in execution order.
SECTION_8 = {
    "res20": """
    conv1 3→16 3/1/1 @32×32; backbone.bb_1_0.conv1 16→16 3/1/1 @32×32;
    backbone.bb_1_0.conv2 16→16 3/1/1 @32×32; backbone.bb_1_1.conv1 16→16 3/1/1 @32×32;
    backbone.bb_1_1.conv2 16→16 3/1/1 @32×32; backbone.bb_1_2.conv1 16→16 3/1/1 @32×32;
    backbone.bb_1_2.conv2 16→16 3/1/1 @32×32; backbone.bb_2_0.conv1 16→32 3/2/1 @16×16;
    backbone.bb_2_0.conv2 32→32 3/1/1 @16×16; backbone.bb_2_0.downsample 16→32 1/2/1 @16×16;
    backbone.bb_2_1.conv1 32→32 3/1/1 @16×16; backbone.bb_2_1.conv2 32→32 3/1/1 @16×16;
    backbone.bb_2_2.conv1 32→32 3/1/1 @16×16; backbone.bb_2_2.conv2 32→32 3/1/1 @16×16;
    backbone.bb_3_0.conv1 32→64 3/2/1 @8×8; backbone.bb_3_0.conv2 64→64 3/1/1 @8×8;
    backbone.bb_3_0.downsample 32→64 1/2/1 @8×8; backbone.bb_3_1.conv1 64→64 3/1/1 @8×8;
    backbone.bb_3_1.conv2 64→64 3/1/1 @8×8; backbone.bb_3_2.conv1 64→64 3/1/1 @8×8;
    backbone.bb_3_2.conv2 64→64 3/1/1 @8×8; fc 64→10 1/1/1 @1×1""",
    "res18": """
    conv1 3→64 3/1/1 @64×64; backbone.bb_1_0.conv1 64→64 3/1/1 @64×64;
    backbone.bb_1_0.conv2 64→64 3/1/1 @64×64; backbone.bb_1_1.conv1 64→64 3/1/1 @64×64;
    backbone.bb_1_1.conv2 64→64 3/1/1 @64×64; backbone.bb_2_0.conv1 64→128 3/2/1 @32×32;
    backbone.bb_2_0.conv2 128→128 3/1/1 @32×32; backbone.bb_2_0.downsample 64→128 1/2/1 @32×32;
    backbone.bb_2_1.conv1 128→128 3/1/1 @32×32; backbone.bb_2_1.conv2 128→128 3/1/1 @32×32;
    backbone.bb_3_0.conv1 128→256 3/2/1 @16×16; backbone.bb_3_0.conv2 256→256 3/1/1 @16×16;
    backbone.bb_3_0.downsample 128→256 1/2/1 @16×16; backbone.bb_3_1.conv1 256→256 3/1/1 @16×16;
    backbone.bb_3_1.conv2 256→256 3/1/1 @16×16; backbone.bb_4_0.conv1 256→512 3/2/1 @8×8;
    backbone.bb_4_0.conv2 512→512 3/1/1 @8×8; backbone.bb_4_0.downsample 256→512 1/2/1 @8×8;
    backbone.bb_4_1.conv1 512→512 3/1/1 @8×8; backbone.bb_4_1.conv2 512→512 3/1/1 @8×8;
    fc 512→200 1/1/1 @1×1""",
    "mbv1": """
    input_layer 3→8 3/2/1 @48×48; backbone.bb_1.depth 8→8 3/1/8 @48×48;
    backbone.bb_1.point 8→16 1/1/1 @48×48; backbone.bb_2.depth 16→16 3/2/16 @24×24;
    backbone.bb_2.point 16→32 1/1/1 @24×24; backbone.bb_3.depth 32→32 3/1/32 @24×24;
    backbone.bb_3.point 32→32 1/1/1 @24×24; backbone.bb_4.depth 32→32 3/2/32 @12×12;
    backbone.bb_4.point 32→64 1/1/1 @12×12; backbone.bb_5.depth 64→64 3/1/64 @12×12;
    backbone.bb_5.point 64→64 1/1/1 @12×12; backbone.bb_6.depth 64→64 3/2/64 @6×6;
    backbone.bb_6.point 64→128 1/1/1 @6×6; backbone.bb_7.depth 128→128 3/1/128 @6×6;
    backbone.bb_7.point 128→128 1/1/1 @6×6; backbone.bb_8.depth 128→128 3/1/128 @6×6;
    backbone.bb_8.point 128→128 1/1/1 @6×6; backbone.bb_9.depth 128→128 3/1/128 @6×6;
    backbone.bb_9.point 128→128 1/1/1 @6×6; backbone.bb_10.depth 128→128 3/1/128 @6×6;
    backbone.bb_10.point 128→128 1/1/1 @6×6; backbone.bb_11.depth 128→128 3/1/128 @6×6;
    backbone.bb_11.point 128→128 1/1/1 @6×6; backbone.bb_12.depth 128→128 3/2/128 @3×3;
    backbone.bb_12.point 128→256 1/1/1 @3×3; backbone.bb_13.depth 256→256 3/1/256 @3×3;
    backbone.bb_13.point 256→256 1/1/1 @3×3; fc 256→2 1/1/1 @1×1""",
}
ENTRY = re.compile(r"(\S+) (\d+)→(\d+) (\d+)/(\d+)/(\d+) @(\d+)×(\d+)")


def parse_table(text: str) -> list[LayerGeometry]:
    layers = []
    for item in text.replace("\n", " ").split(";"):
        m = ENTRY.fullmatch(item.strip())
        assert m, item
        name, c_in, c_out, k, s, g, o_x, o_y = m.groups()
        layers.append(
            LayerGeometry(
                name, int(c_in), int(c_out), int(k), int(k), int(s), int(g), int(o_x), int(o_y)
            )
        )
    return layers


@pytest.mark.parametrize("net, n_layers", [("res20", 22), ("res18", 21), ("mbv1", 28)])
def test_dry_forward_gives_the_method_layer_table(net, n_layers, reference_geometry):
    expected = parse_table(SECTION_8[net])
    assert len(expected) == n_layers
    assert reference_geometry(net) == expected


@pytest.mark.parametrize("net", ["res20", "mbv1"])
@pytest.mark.parametrize("form", ["search", "mapped"])
def test_quantized_forms_have_the_same_geometry(net, form, diana):
    spec = REFERENCE_SPECS[net]
    model = build_model(spec, form, diana)
    assert record_geometry(model, spec.input_size) == parse_table(SECTION_8[net])
    assert is_quantized(model)
    assert model.spec == spec and model.form == form


def test_mbv1_search_form_searches_only_the_pointwise_convs(diana):
    model = build_model(REFERENCE_SPECS["mbv1"], "search", diana)
    searched = [n for n, m in model.named_modules() if isinstance(m, SearchConv2d)]
    assert searched == [f"backbone.bb_{i}.point" for i in range(1, 14)]
    assert searchable_names(model) == searched
    assert isinstance(model.fc, MappedConv2d) and isinstance(model.input_layer, MappedConv2d)


@pytest.mark.parametrize("net", ["res20", "res18", "mbv1"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("size", [(1, 8, 8), (1, 28, 28)])
def test_forward_backward_on_small_inputs(net, form, size, diana):
    model = build_model(ModelSpec(net, size, 10), form, diana).train()
    x = torch.rand(2, *size)
    y = model(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    F.cross_entropy(y, torch.tensor([1, 7])).backward()
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.weight.grad is not None
    if form == "search":
        assert any(layer.alpha.grad is not None for layer in search_layers(model))


def test_build_errors(diana):
    with pytest.raises(ConfigError, match="unknown model 'vgg'"):
        build_model(ModelSpec("vgg", (3, 32, 32), 10))
    with pytest.raises(ValueError, match="needs a platform"):
        build_model(REFERENCE_SPECS["res20"], "search")
    with pytest.raises(ValueError, match="unknown form"):
        build_model(REFERENCE_SPECS["res20"], "half", diana)


def test_resnet_add_shares_conv1_input_clip_without_downsample(diana):
    model = build_model(REFERENCE_SPECS["res20"], "search", diana)
    plain, down = model.backbone.bb_1_1, model.backbone.bb_2_0
    assert isinstance(plain.add, QuantAdd) and plain.add.act is plain.act1
    assert plain.conv1.input_quant is plain.act1
    assert down.add.act is not down.act1 and down.downsample.input_quant is down.act1
    assert model.input_act.clip.item() == 1.0 and plain.act2.clip.item() == 6.0


# -- folding and conversion -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_float():
    """A float res20 (tiny input) with non-trivial BatchNorm statistics and affine parameters."""
    torch.manual_seed(1)
    spec = ModelSpec("res20", (3, 8, 8), 10)
    model = build_model(spec, "float").train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
        for _ in range(4):
            model(torch.rand(16, 3, 8, 8) * 2 + 0.5)
    return model.eval()


def test_conv2d_bn_folded_equals_module_in_eval(trained_float):
    convs = [m for m in trained_float.modules() if isinstance(m, Conv2dBN)]
    assert len(convs) == 21
    x = torch.randn(4, 16, 8, 8) * 2
    for conv in convs:
        assert not torch.allclose(conv.bn.running_mean, torch.zeros_like(conv.bn.running_mean))
        xin = torch.randn(4, conv.in_channels, 8, 8) * 2 if conv.in_channels != 16 else x
        weight, bias = conv.folded()
        folded = F.conv2d(xin, weight, bias, conv.stride, conv.padding, groups=conv.groups)
        assert torch.allclose(folded, conv(xin), atol=1e-5)


@pytest.mark.parametrize("form", ["search", "mapped"])
def test_fold_float_into_copies_folded_weights_and_inits_quantizers(trained_float, form, diana):
    quant = build_model(trained_float.spec, form, diana)
    fold_float_into(quant, trained_float)
    sources = dict(trained_float.named_modules())
    for name, layer in quant_layers(quant).items():
        src = sources[name]
        x = torch.randn(2, layer.in_channels, 8, 8)
        # before quantization, the folded conv computes what the float conv + BN computes
        float_out = F.conv2d(
            x, layer.weight, layer.bias, layer.stride, layer.padding, groups=layer.groups
        )
        assert torch.allclose(float_out, src(x), atol=1e-5), name
        # quantizers are initialised from the folded weights
        peak = layer.weight.abs().max()
        expected_range = 2.0 ** torch.floor(torch.log2(2 * peak))
        assert layer.weight_quants[0].range().item() == expected_range.item()
        assert not torch.all(layer.weight_quants[1].log_scale == 0)


def test_fold_float_into_rejects_another_network(trained_float, diana):
    other = build_model(ModelSpec("mbv1", (3, 8, 8), 10), "mapped", diana)
    with pytest.raises(CheckpointError, match="not the same network"):
        fold_float_into(other, trained_float)


def test_to_mapped_keeps_weights_and_takes_the_argmax(trained_float, diana):
    search = build_model(trained_float.spec, "search", diana)
    fold_float_into(search, trained_float)
    with torch.no_grad():
        for layer in search_layers(search):
            layer.alpha.normal_()
        search.backbone.bb_1_0.conv1.alpha.fill_(0.3)  # ties: digital
    expected = model_mapping(search, diana)
    assert expected.layers["backbone.bb_1_0.conv1"] == (0,) * 16
    mapped = to_mapped(search, diana)
    assert all(isinstance(m, MappedConv2d) for m in quant_layers(mapped).values())
    assert model_mapping(mapped, diana) == expected
    s_params = dict(search.named_parameters())
    for name, p in mapped.named_parameters():
        assert torch.equal(p, s_params[name]), name
    x = torch.rand(3, 3, 8, 8)
    search.eval()
    mapped.eval()
    with torch.no_grad(), hard_mapping(search):
        assert torch.allclose(mapped(x), search(x), atol=1e-5)


def test_to_mapped_with_an_explicit_mapping(trained_float, diana):
    search = build_model(trained_float.spec, "search", diana)
    mapping = model_mapping(search, diana)
    layers = dict(mapping.layers)
    layers["fc"] = (1,) * 10
    mapped = to_mapped(search, diana, type(mapping)(mapping.platform, mapping.units, layers))
    assert mapped.fc.assignment.tolist() == [1] * 10


def test_apply_mapping_to_a_whole_model(diana):
    model = build_model(ModelSpec("mbv1", (1, 8, 8), 10), "mapped", diana)
    mapping = model_mapping(model, diana)
    layers = dict(mapping.layers)
    layers["backbone.bb_3.point"] = (1, 0) * 16
    apply_mapping(model, type(mapping)(mapping.platform, mapping.units, layers))
    assert model.backbone.bb_3.point.active_units() == (0, 1)
    assert isinstance(model.backbone.bb_3.point_act, UintActPact)
