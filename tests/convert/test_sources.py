# SPDX-License-Identifier: Apache-2.0
"""Converted networks through the model registry: weights, input channels, custom factories,
and a user's ResNet20 costed exactly like odimo's own res20."""

from __future__ import annotations

import pytest
import torch
import torchvision

from odimo.errors import CheckpointError, ConfigError
from odimo.hw import get_platform, record_geometry
from odimo.models import ModelSpec, build_model, searchable_names
from odimo.nn.baselines import baseline_mapping
from odimo.nn.report import cost_report
from odimo.quant import UintActPact
from tests.convert.nets import PlainResNet20

#: DIANA's baselines (the default platform).
BASELINES = tuple(get_platform("diana").baselines())

RES20_TARGET = "tests.convert.nets:resnet20"


def spec(name: str, size, classes: int, **options) -> ModelSpec:
    return ModelSpec(name, tuple(size), classes, tuple(sorted(options.items())))


def _report(model, spec_: ModelSpec, baseline: str, diana) -> dict:
    geometry = record_geometry(model, spec_.input_size)
    mapping = baseline_mapping(baseline, geometry, diana, searchable_names(model))
    return cost_report(
        geometry,
        mapping,
        diana,
        model="-",
        dataset="cifar10",
        input_size=spec_.input_size,
        mapping_label=baseline,
    )


def test_user_resnet20_costs_exactly_like_odimo_res20(diana) -> None:
    """Layer by layer (names, geometry, channels per unit, cycles, energy), every baseline."""
    ours = build_model(ModelSpec("res20", (3, 32, 32), 10), "float")
    s = spec("custom", (3, 32, 32), 10, target=RES20_TARGET)
    theirs = build_model(s, "float")
    for baseline in BASELINES:
        a, b = _report(ours, s, baseline, diana), _report(theirs, s, baseline, diana)
        assert a["layers"] == b["layers"], baseline
        assert (a["latency_cycles"], a["energy_uj"]) == (b["latency_cycles"], b["energy_uj"])
    digital = _report(theirs, s, "all_digital", diana)
    assert digital["latency_cycles"] == pytest.approx(257_673.25)  # the README's check value
    # the same number of activation quantizers as odimo's res20 (input, 2 per block, 2 adds)
    count = lambda m: len({id(q) for q in m.modules() if isinstance(q, UintActPact)})  # noqa: E731
    assert (
        count(build_model(s, "mapped", diana))
        == count(build_model(ModelSpec("res20", (3, 32, 32), 10), "mapped", diana))
        == 22
    )


def test_pretrained_weights_carry_over_exactly(tmp_path) -> None:
    torch.manual_seed(3)
    net = torchvision.models.squeezenet1_0(num_classes=6).eval()
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    torch.manual_seed(4)  # another initialisation: only the file can make them equal
    model = build_model(
        spec("torchvision", (3, 32, 32), 6, arch="squeezenet1_0", weights=str(path)), "float"
    )
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), net(x))


def test_weights_adapt_to_grey_images_and_another_class_count(tmp_path, capsys) -> None:
    net = torchvision.models.squeezenet1_0(num_classes=7)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": net.state_dict()}, path)
    model = build_model(
        spec("torchvision", (1, 32, 32), 5, arch="squeezenet1_0", weights=str(path)), "float"
    )
    first = model.get_submodule("features.0")
    assert torch.equal(first.weight, net.features[0].weight.sum(1, keepdim=True))
    assert torch.equal(
        model.get_submodule("features.3.squeeze").weight, net.features[3].squeeze.weight
    )
    assert model.get_submodule("classifier.1").out_channels == 5
    assert "head 'classifier.1'" in capsys.readouterr().out


def test_bad_weights_files_fail_with_one_line(tmp_path) -> None:
    s = dict(arch="squeezenet1_0")
    with pytest.raises(CheckpointError, match="does not exist"):
        build_model(spec("torchvision", (3, 32, 32), 4, weights=str(tmp_path / "no.pt"), **s))
    other = tmp_path / "other.pt"
    torch.save(torchvision.models.shufflenet_v2_x0_5(num_classes=4).state_dict(), other)
    with pytest.raises(CheckpointError, match="does not fit the network"):
        build_model(spec("torchvision", (3, 32, 32), 4, weights=str(other), **s))
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable state-dict"):
        build_model(spec("torchvision", (3, 32, 32), 4, weights=str(junk), **s))


def test_custom_factory_gets_classes_and_channels_and_kwargs(diana) -> None:
    s = spec("custom", (1, 16, 16), 3, target="tests.convert.nets:mixed")
    model = build_model(s, "search", diana)
    assert model.stem.in_channels == 1 and model.fc.out_channels == 3
    assert isinstance(model, torch.nn.Module) and model.form == "search"
    with pytest.raises(ConfigError, match="cannot import model.target"):
        build_model(spec("custom", (1, 16, 16), 3, target="tests.convert.nets:nope"))
    with pytest.raises(ConfigError, match="needs model.target"):
        build_model(spec("custom", (1, 16, 16), 3))
    with pytest.raises(ConfigError, match="unknown torchvision"):
        build_model(spec("torchvision", (3, 32, 32), 3, arch="resnet1000"))


def test_plain_resnet20_float_form_is_the_module() -> None:
    net = PlainResNet20(4).eval()
    model = build_model(spec("custom", (3, 16, 16), 4, target=RES20_TARGET), "float")
    model.load_state_dict(
        build_model(spec("custom", (3, 16, 16), 4, target=RES20_TARGET), "float").state_dict()
    )
    assert [n for n, _ in model.named_parameters()][:3] == [
        "conv1.weight",
        "conv1.bn.weight",
        "conv1.bn.bias",
    ]
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in net.parameters())
