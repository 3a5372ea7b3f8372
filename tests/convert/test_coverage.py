# SPDX-License-Identifier: Apache-2.0
"""Functional ops, padding, slicing, upsampling, other activations and shared layers: what
converts (and computes what the source computes), what is refused in one line, and why."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from odimo.convert import ConversionError, convert
from odimo.hw import record_geometry
from odimo.models import ModelSpec, build_model
from odimo.nn.factory import make_ops
from tests.convert.nets import Activated, Functional, Padded, Shared, Sliced, Upsampled
from tests.convert.test_convert import randomise_bn

SIZE = (3, 16, 16)


def _float(net: nn.Module, size=SIZE, **kw) -> nn.Module:
    return convert(net.eval(), make_ops("float", None), size, **kw).eval()


def _refusal(net: nn.Module, size=SIZE, **kw) -> str:
    with pytest.raises(ConversionError) as info:
        convert(net.eval(), make_ops("float", None), size, **kw)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_functional_forms_convert_exactly(diana) -> None:
    net = Functional().eval()
    model = _float(net)
    x = torch.rand(2, *SIZE)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
    mapped = convert(net, make_ops("mapped", diana), SIZE)
    names = [g.name for g in record_geometry(mapped, SIZE)]
    assert names == ["a", "b", "c", "fc", "fc2"]


def test_symmetric_zero_padding_folds_into_the_next_conv(diana) -> None:
    net = Padded((1, 1, 2, 2)).eval()
    randomise_bn(net)
    model = _float(net)
    assert model.conversion.folded_pads == ("pad",)
    assert tuple(model.conv.padding) == (1 + 2, 1 + 1)  # (height, width) = conv's 1 + pad's
    x = torch.rand(2, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), rtol=1e-5, atol=1e-6)
    # the cost model sees the padded geometry: output (16 + 2*3 - 3)//2 + 1 = 10 rows, 9 columns
    (conv, _) = record_geometry(convert(net, make_ops("mapped", diana), SIZE), SIZE)
    assert (conv.o_y, conv.o_x) == (10, 9)


@pytest.mark.parametrize(
    ("pad", "words"),
    [((0, 1, 0, 1), "asymmetric"), ((1, 1, 1, 1, 1, 1), "other dimensions")],
)
def test_padding_a_conv_cannot_hold_is_refused(pad, words) -> None:
    text = _refusal(Padded(pad))
    assert "'pad'" in text and "torch.nn.functional.pad" in text and words in text


def test_channel_and_batch_slices_convert_and_cost_the_sliced_inputs(diana) -> None:
    net = Sliced().eval()
    model = _float(net, (3, 8, 8))
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
    geometry = record_geometry(convert(net, make_ops("mapped", diana), (3, 8, 8)), (3, 8, 8))
    assert {g.name: g.c_in for g in geometry} == {"stem": 3, "left": 8, "right": 8, "fc": 16}


def test_masked_selection_is_refused_at_the_mask() -> None:
    """A boolean mask selects data-dependent elements: refused where the mask is computed."""
    text = _refusal(Sliced(mask=True), (3, 8, 8))
    assert text.startswith("cannot convert node 'ge' (ge)")


def test_nearest_integer_upsampling_copies_values(diana) -> None:
    net = Upsampled("nearest", 2).eval()
    model = _float(net)
    x = torch.rand(2, *SIZE)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
    geometry = record_geometry(convert(net, make_ops("mapped", diana), SIZE), SIZE)
    assert [(g.name, g.o_x) for g in geometry] == [("down", 8), ("up", 16), ("fc", 1)]


@pytest.mark.parametrize(("mode", "factor"), [("bilinear", 2), ("nearest", 1.5)])
def test_other_upsampling_is_refused(mode: str, factor: float) -> None:
    text = _refusal(Upsampled(mode, factor))
    assert "interpolate" in text and f"mode={mode!r}" in text and "integer" in text


RELU_LIKE = [
    ("PReLU", nn.PReLU(8)),
    ("LeakyReLU", nn.LeakyReLU(0.1)),
    ("SiLU", nn.SiLU()),
    ("Hardswish", nn.Hardswish()),
    ("GELU", nn.GELU()),
    ("ELU", nn.ELU()),
    ("SiLU", F.silu),
    ("Hardswish", F.hardswish),
    ("LeakyReLU", F.leaky_relu),
    ("GELU", F.gelu),
]


def _nodes(act) -> tuple[str, str]:
    """The traced names of the two activation calls: the module path, or the function's name."""
    if isinstance(act, nn.Module):
        return "act1", "act2"
    return act.__name__, f"{act.__name__}_1"


@pytest.mark.parametrize(("name", "act"), RELU_LIKE, ids=lambda v: getattr(v, "__name__", None))
def test_relu_like_activations_are_refused_naming_the_substitution(name, act) -> None:
    text = _refusal(Activated(act))
    assert f"node {_nodes(act)[0]!r}" in text and name in text
    assert "model.substitute_activations=relu" in text and "unsigned" in text


@pytest.mark.parametrize(("name", "act"), RELU_LIKE, ids=lambda v: getattr(v, "__name__", None))
def test_substitution_computes_the_relu_network(name, act, diana) -> None:
    """With substitute='relu' the float form equals the same network written with nn.ReLU."""
    net = Activated(act).eval()
    randomise_bn(net)
    reference = Activated(nn.ReLU()).eval()
    reference.load_state_dict(net.state_dict(), strict=False)  # PReLU's slope is dropped
    model = _float(net, substitute="relu")
    first, second = _nodes(act)
    assert model.conversion.substituted == (f"{first} ({name})", f"{second} ({name})")
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    search = convert(net, make_ops("search", diana), SIZE, substitute="relu")
    assert (
        search.conversion.quantizers
        == convert(reference, make_ops("search", diana), SIZE).conversion.quantizers
    )


@pytest.mark.parametrize("act", [nn.Sigmoid(), nn.Tanh(), nn.Hardsigmoid(), torch.sigmoid])
def test_squashing_activations_are_refused_even_with_the_substitution(act) -> None:
    text = _refusal(Activated(act), substitute="relu")
    assert f"node {_nodes(act)[0]!r}" in text and "no ReLU stand-in" in text


def test_unknown_substitution_is_one_line() -> None:
    from odimo.errors import ConfigError

    with pytest.raises(ConfigError, match="choose null or relu"):
        convert(Activated(nn.SiLU()), make_ops("float", None), SIZE, substitute="gelu")


def test_a_conv_called_twice_is_refused_not_under_costed() -> None:
    text = _refusal(Shared())
    assert "Conv2d module 'body'" in text and "2 times" in text and "body, body_1" in text


@pytest.mark.parametrize(
    ("arch", "plain", "substituted"),
    [
        ("mobilenet_v3_small", ("'features_0_2'", "Hardswish"), ("Hardsigmoid", "gate")),
        ("efficientnet_b0", ("'features_0_2'", "SiLU"), ("Sigmoid", "gate")),
    ],
)
def test_torchvision_se_networks_are_refused_by_name(arch, plain, substituted) -> None:
    """Without the option: the first hard-swish / SiLU, naming the option. With it: the
    squeeze-excitation gate, which has no stand-in."""
    net = torchvision.models.get_model(arch, weights=None, num_classes=10)
    text = _refusal(net, (3, 32, 32))
    assert all(w in text for w in plain) and "model.substitute_activations=relu" in text
    text = _refusal(net, (3, 32, 32), substitute="relu")
    assert all(w in text for w in substituted) and "squeeze-excitation" in text


def test_the_option_reaches_the_converter_through_the_model_config(tmp_path) -> None:
    spec = ModelSpec(
        "custom",
        SIZE,
        4,
        (("substitute_activations", "relu"), ("target", "tests.convert.nets:silu_net")),
    )
    model = build_model(spec, "float")
    assert model.conversion.substituted == ("act1 (SiLU)", "act2 (SiLU)")
