# SPDX-License-Identifier: Apache-2.0
"""Conversion: exact float forms, search == mapped at one-hot α, geometry, quantizer placement."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from odimo.convert import ConversionError, LinearAsConv2d, convert
from odimo.hw import record_geometry
from odimo.models import ModelSpec, build_model, fold_float_into, searchable_names, to_mapped
from odimo.nn import Mapping, apply_mapping, quant_layers
from odimo.nn.conv import Conv2dBN, MappedConv2d, SearchConv2d, hard_mapping
from odimo.nn.factory import make_ops
from odimo.quant import QuantAdd, QuantAvgPool2d, UintActPact
from tests.convert.nets import Branchy, Mixed, Normed

#: The listed torchvision archs; the two heavy ones (vgg11_bn: 130 M parameters) are slow.
FAST_ARCHS = ["resnet18", "resnet34", "mobilenet_v2", "shufflenet_v2_x0_5", "squeezenet1_0"]
SLOW_ARCHS = ["resnet50", "vgg11_bn"]
ARCHS = FAST_ARCHS + [pytest.param(a, marks=pytest.mark.slow) for a in SLOW_ARCHS]
SIZE = (3, 32, 32)


def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine parameters (fresh ones are the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def tv(arch: str, num_classes: int = 10) -> nn.Module:
    net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    randomise_bn(net)
    return net.eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_float_form_computes_exactly_the_source(arch: str) -> None:
    """Eval mode, bit for bit: conv+BN as Conv2dBN and Linear as a 1x1 conv change nothing."""
    net = tv(arch)
    model = convert(net, make_ops("float", None), SIZE)
    x = torch.rand(3, *SIZE)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), net(x))
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(record_geometry(model, SIZE)) == len(convs)  # every conv and linear is a layer
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.children())


def _forms(net: nn.Module, diana, size=SIZE):
    float_model = convert(net, make_ops("float", None), size)
    search = convert(net, make_ops("search", diana), size)
    mapped = convert(net, make_ops("mapped", diana), size)
    fold_float_into(search, float_model)
    fold_float_into(mapped, float_model)
    return float_model, search, mapped


def _all_digital(model: nn.Module, diana) -> Mapping:
    layers = {n: (0,) * m.out_channels for n, m in quant_layers(model).items()}
    return Mapping(diana.name, diana.unit_names, layers)


#: Folding initialises the ternary scales by a least-squares search over every weight, which
#: costs seconds per million weights: the ResNets (11-25 M) run in the slow suite.
SEARCH_ARCHS = ["mobilenet_v2", "shufflenet_v2_x0_5", "squeezenet1_0"] + [
    pytest.param(a, marks=pytest.mark.slow) for a in ("resnet18", "resnet34")
]


@pytest.mark.parametrize("arch", SEARCH_ARCHS)
def test_search_at_one_hot_digital_alpha_equals_mapped(arch: str, diana) -> None:
    _, search, mapped = _forms(tv(arch), diana)
    apply_mapping(search, _all_digital(search, diana))
    apply_mapping(mapped, _all_digital(mapped, diana))
    x = torch.rand(2, *SIZE)
    with torch.no_grad(), hard_mapping(search):
        assert torch.equal(search.eval()(x), mapped.eval()(x))  # deployed (exact) arithmetic
        outs = []
        for model in (search, mapped):  # training (fake-quant) path: same dropout draws
            torch.manual_seed(1)
            outs.append(model.train()(x))
        assert torch.equal(*outs)


def test_mixed_constructs_convert_exactly_with_the_source_geometry(diana) -> None:
    net = Mixed().eval()
    randomise_bn(net)
    size = (3, 16, 16)
    float_model, search, mapped = _forms(net, diana, size)
    x = torch.rand(4, *size)
    with torch.no_grad():
        assert torch.equal(float_model.eval()(x), net(x))
    shapes = {}

    def record(name: str):
        def hook(module, args, output) -> None:
            shapes[name] = tuple(output.shape[2:])

        return hook

    hooks = [
        m.register_forward_hook(record(n))
        for n, m in net.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    net(x[:1])
    for h in hooks:
        h.remove()
    for model in (float_model, search, mapped):
        geometry = {g.name: g for g in record_geometry(model, size)}
        assert list(geometry) == ["stem", "left", "right", "grouped", "dw", "fc"]
        for name, (o_y, o_x) in shapes.items():
            src = net.get_submodule(name)
            g = geometry[name]
            assert (g.o_y, g.o_x, g.k_y, g.k_x) == (o_y, o_x, *src.kernel_size)
            assert (g.groups, g.stride, g.c_in) == (src.groups, src.stride[0], src.in_channels)
        assert (geometry["fc"].c_in, geometry["fc"].o_x, geometry["fc"].k_x) == (64, 1, 1)
    # grouped and depthwise convs are mapped on the digital unit; the others are searched
    kinds = {n: type(m) for n, m in quant_layers(search).items()}
    assert kinds["grouped"] is MappedConv2d and kinds["dw"] is MappedConv2d
    assert kinds["left"] is SearchConv2d and kinds["fc"] is SearchConv2d
    with torch.no_grad():
        assert mapped.eval()(x).shape == (4, 5)


def test_only_the_layer_giving_the_logits_decides(diana) -> None:
    """The linear whose output is the network's output is its output layer (`decides`, the
    read-out gain rule of the logits); a linear feeding another is not; res20's fc is."""
    from tests.convert.nets import Functional

    _, search, mapped = _forms(Functional().eval(), diana, (3, 16, 16))
    for model in (search, mapped):
        layers = quant_layers(model)
        assert layers["fc2"].decides and not layers["fc"].decides
        assert [n for n, m in layers.items() if m.decides] == ["fc2"]
    res20 = build_model(ModelSpec("res20", (3, 32, 32), 10), "mapped", diana)
    assert [n for n, m in quant_layers(res20).items() if m.decides] == ["fc"]


def test_quantizers_sit_where_odimo_models_put_them(diana) -> None:
    net = Mixed().eval()
    model = convert(net, make_ops("mapped", diana), (3, 16, 16))
    layers = quant_layers(model)
    # the image gets odimo's input quantizer (clip 1) before the stem
    assert layers["stem"].input_quant is model.input_act
    assert float(model.input_act.clip.detach()) == 1.0
    # the two ReLUs joined by the concatenation share ONE quantizer: the grouped conv reads it
    assert layers["grouped"].input_quant is model.act6
    calls = [n.target for n in model.graph.nodes if n.op == "call_module"]
    assert calls.count("act6") == 2  # ReLU6 on `left` and torch.relu on `right`
    # chunk keeps the grid: the depthwise conv reads with the grouped conv's ReLU quantizer
    # (F.relu calls at the top level are named relu, relu_1, ... in execution order)
    assert layers["dw"].input_quant is model.get_submodule("relu_1")
    assert calls.index("relu_1") < calls.index("dw") < calls.index("relu_2")
    # local average pooling leaves the grid: a quantizer is inserted before the classifier
    assert layers["fc"].input_quant is model.get_submodule("fc_act")
    assert model.conversion.rectified == ()


def test_residual_add_shares_the_identity_quantizer_like_res20(diana) -> None:
    net = torchvision.models.resnet18(num_classes=3).eval()
    model = convert(net, make_ops("mapped", diana), SIZE)
    block = model.get_submodule("layer1.0")
    add = block.get_submodule("add")
    assert isinstance(add, QuantAdd)
    # no downsample: the add quantizes with the quantizer of the block input (conv1's)
    assert add.act is model.get_submodule("layer1.0.conv1").input_quant
    # with a downsample the add has its own quantizer
    add2 = model.get_submodule("layer2.0.add")
    assert add2.act is not model.get_submodule("layer2.0.conv1").input_quant
    # global pooling quantizes its input; the classifier reads with that quantizer
    pool = model.avgpool
    assert isinstance(pool, QuantAvgPool2d)
    assert model.fc.input_quant is pool.act
    assert isinstance(model.fc, MappedConv2d) and model.fc.kernel_size == (1, 1)


def test_float_classifier_is_a_1x1_conv_that_folds(diana) -> None:
    net = Mixed().eval()
    float_model, search, _ = _forms(net, diana, (3, 16, 16))
    assert isinstance(float_model.fc, LinearAsConv2d)
    assert isinstance(float_model.left, Conv2dBN) and not isinstance(float_model.right, Conv2dBN)
    assert torch.equal(search.fc.weight.flatten(1), net.fc.weight)
    assert torch.equal(search.right.bias, net.right.bias)
    w, b = float_model.stem.folded()
    gain = net.stem_bn.weight / torch.sqrt(net.stem_bn.running_var + net.stem_bn.eps)
    expected_b = net.stem_bn.bias + (net.stem.bias - net.stem_bn.running_mean) * gain
    assert torch.allclose(b, expected_b, atol=1e-6)
    assert torch.allclose(search.stem.weight, net.stem.weight * gain.view(-1, 1, 1, 1))


def test_fixed_layers_are_not_searched(diana) -> None:
    net = Mixed().eval()
    model = convert(net, make_ops("search", diana), (3, 16, 16), fixed=("stem", "f*"))
    assert isinstance(model.stem, MappedConv2d) and isinstance(model.fc, MappedConv2d)
    assert searchable_names(model) == ["left", "right", "grouped", "dw"]
    assert model.conversion.fixed == ("stem", "fc")


@pytest.mark.parametrize(
    ("net", "words"),
    [
        (
            lambda: torchvision.models.mobilenet_v3_small(num_classes=3),
            ["'features_0_2'", "Hardswish", "model.substitute_activations=relu"],
        ),
        (Normed, ["'norm'", "LayerNorm", "BatchNorm2d"]),
        (Branchy, ["data-dependent control flow", "nets.py:", "forward"]),
    ],
)
def test_unsupported_operations_name_the_node_and_the_way_out(net, words) -> None:
    with pytest.raises(ConversionError) as info:
        convert(net(), make_ops("float", None), (3, 8, 8) if net is not Branchy else (3, 4, 4))
    text = str(info.value)
    assert "\n" not in text
    for word in words:
        assert word in text


def test_build_model_through_the_registry(diana) -> None:
    spec = ModelSpec("torchvision", (1, 32, 32), 4, (("arch", "squeezenet1_0"),))
    float_model = build_model(spec, "float")
    mapped = build_model(spec, "mapped", diana)
    assert float_model.get_submodule("features.0").in_channels == 1  # adapted to the data
    assert [g.name for g in record_geometry(float_model, spec.input_size)] == [
        g.name for g in record_geometry(mapped, spec.input_size)
    ]
    assert isinstance(mapped.get_submodule("features.2"), nn.MaxPool2d)
    assert any(isinstance(m, UintActPact) for m in mapped.modules())
    search = build_model(spec, "search", diana)
    fold_float_into(search, float_model)
    apply_mapping(search, _all_digital(search, diana))
    fold_float_into(mapped, float_model)
    x = torch.rand(2, *spec.input_size)
    with torch.no_grad():  # same state-dict names in both quantized forms
        assert torch.equal(to_mapped(search, diana).eval()(x), mapped.eval()(x))
