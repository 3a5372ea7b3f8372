# SPDX-License-Identifier: Apache-2.0
"""The per-channel mapping: JSON round trip, every kind of bad file, and applying it to layers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from odimo.errors import MappingError
from odimo.hw import LayerGeometry
from odimo.nn import MappedConv2d, Mapping, SearchConv2d, apply_mapping, model_mapping
from odimo.nn.mapping import FORMAT, quant_layers
from odimo.quant import UintActPact

GEOMETRY = [
    LayerGeometry("conv", 3, 4, 3, 3, 1, 1, 8, 8),
    LayerGeometry("dw", 4, 4, 3, 3, 1, 4, 8, 8),
    LayerGeometry("fc", 4, 2, 1, 1, 1, 1, 1, 1),
]


def good_mapping() -> Mapping:
    return Mapping(
        "diana", ("digital", "analog"), {"conv": (0, 1, 1, 0), "dw": (0, 0, 0, 0), "fc": (1, 0)}
    )


def write(tmp_path, data) -> str:
    path = tmp_path / "mapping.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_json_round_trip(tmp_path):
    mapping = good_mapping()
    path = tmp_path / "sub.json"
    mapping.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT == "odimo.mapping/1"
    assert data["units"] == ["digital", "analog"]
    assert data["layers"][0] == {
        "name": "conv",
        "c_out": 4,
        "channels": {"digital": 2, "analog": 2},
        "assignment": [0, 1, 1, 0],
    }
    loaded = Mapping.load(path)
    assert loaded == mapping
    assert list(loaded.layers) == ["conv", "dw", "fc"]  # order kept
    loaded.check(GEOMETRY, _platform())


def _platform():
    from odimo.hw import get_platform

    return get_platform("diana")


def test_counts_and_fractions():
    m = good_mapping()
    assert m.counts("conv") == [2, 2] and m.counts("fc") == [1, 1]
    assert m.counts_tensor(["fc", "conv"]).tolist() == [[1.0, 1.0], [2.0, 2.0]]
    assert m.unit_fraction(1) == pytest.approx(3 / 10)
    assert m.unit_fraction(0) == pytest.approx(7 / 10)
    assert list(m.ordered(["fc", "dw", "conv"]).layers) == ["fc", "dw", "conv"]


def edit(fn):
    data = good_mapping().to_json()
    fn(data)
    return data


@pytest.mark.parametrize(
    "data, message",
    [
        ({"format": "something/else", "units": [], "layers": []}, "not an odimo mapping"),
        ([1, 2, 3], "not an odimo mapping"),
        (
            edit(lambda d: d["layers"][0]["assignment"].__setitem__(1, 2)),
            r"'conv' uses a unit index outside 0..1",
        ),
        (
            edit(lambda d: d["layers"][0]["assignment"].__setitem__(1, -1)),
            r"'conv' uses a unit index outside 0..1",
        ),
        (
            edit(lambda d: d["layers"][0].__setitem__("channels", {"digital": 3, "analog": 1})),
            "'conv' declares channels",
        ),
        (edit(lambda d: d["layers"][2].__setitem__("c_out", 3)), "'fc' has c_out 3 but 2"),
        (edit(lambda d: d["layers"].append(dict(d["layers"][0]))), "'conv' appears twice"),
        (edit(lambda d: d.pop("units")), "malformed mapping JSON"),
        (edit(lambda d: d["layers"][1].pop("assignment")), "malformed mapping JSON"),
        (edit(lambda d: d["layers"][1].__setitem__("assignment", ["x"])), "malformed mapping JSON"),
        (edit(lambda d: d.__setitem__("layers", 7)), "malformed mapping JSON"),
        (edit(lambda d: d["layers"][0].__setitem__("channels", [2, 2])), "malformed mapping JSON"),
    ],
)
def test_bad_files_raise_mapping_error_naming_the_problem(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(MappingError, match=message) as err:
        Mapping.load(path)
    assert str(tmp_path) in str(err.value)


def test_invalid_json_and_missing_file(tmp_path):
    path = write(tmp_path, '{"format": "odimo.mapping/1", "layers": [')
    with pytest.raises(MappingError, match="not valid JSON"):
        Mapping.load(path)
    with pytest.raises(MappingError, match="does not exist"):
        Mapping.load(tmp_path / "nope.json")


def test_check_against_the_network():
    platform = _platform()
    good_mapping().check(GEOMETRY, platform)
    layers = dict(good_mapping().layers)

    unknown = Mapping("diana", ("digital", "analog"), {**layers, "conv9": (0,)})
    with pytest.raises(MappingError, match=r"unknown layers \['conv9'\]"):
        unknown.check(GEOMETRY, platform)

    missing = Mapping("diana", ("digital", "analog"), {k: layers[k] for k in ("conv", "fc")})
    with pytest.raises(MappingError, match=r"missing layers \['dw'\]"):
        missing.check(GEOMETRY, platform)

    wrong = Mapping("diana", ("digital", "analog"), {**layers, "fc": (0, 0, 0)})
    with pytest.raises(MappingError, match="gives layer 'fc' 3 channels, the network has 2"):
        wrong.check(GEOMETRY, platform)

    depthwise = Mapping("diana", ("digital", "analog"), {**layers, "dw": (0, 1, 0, 0)})
    with pytest.raises(MappingError, match=r"'dw' \(groups=4\) cannot run on \['analog'\]"):
        depthwise.check(GEOMETRY, platform)

    other = Mapping("chip", ("a", "b"), layers)
    with pytest.raises(MappingError, match="mapping is for chip"):
        other.check(GEOMETRY, platform)


class _Net(nn.Module):
    def __init__(self, platform, search: bool):
        super().__init__()
        cls = SearchConv2d if search else MappedConv2d
        self.act = UintActPact(1.0)
        self.conv = cls(3, 4, 3, platform=platform, input_quant=self.act)
        self.dw = MappedConv2d(4, 4, 3, 1, 4, platform=platform, input_quant=self.act)
        self.fc = cls(4, 2, 1, platform=platform, input_quant=self.act)

    def forward(self, x):
        x = self.dw(self.conv(self.act(x)))
        return self.fc(self.act(x.mean((-2, -1), keepdim=True)))


@pytest.mark.parametrize("search", [False, True])
def test_apply_mapping_and_read_it_back(diana, search):
    net = _Net(diana, search)
    mapping = good_mapping()
    apply_mapping(net, mapping)
    assert model_mapping(net, diana) == mapping
    assert list(quant_layers(net)) == ["conv", "dw", "fc"]
    if search:
        assert net.conv.alpha.tolist() == [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]]


def test_apply_mapping_errors(diana):
    net = _Net(diana, search=False)
    layers = dict(good_mapping().layers)
    with pytest.raises(MappingError, match=r"no entry for layers \['dw'\]"):
        apply_mapping(
            net, Mapping("diana", ("digital", "analog"), {k: layers[k] for k in ("conv", "fc")})
        )
    with pytest.raises(MappingError, match="gives layer 'conv' 5 channels, the network has 4"):
        apply_mapping(net, Mapping("diana", ("digital", "analog"), {**layers, "conv": (0,) * 5}))
    with pytest.raises(MappingError, match=r"layer 'dw'.*\['analog'\] cannot run"):
        apply_mapping(net, Mapping("diana", ("digital", "analog"), {**layers, "dw": (1, 0, 0, 0)}))


def test_apply_mapping_rejects_analog_on_a_depthwise_search_conv(diana):
    """A search conv whose unit cannot run it would silently keep another argmax."""
    act = UintActPact(1.0)
    net = nn.Module()
    net.dw = SearchConv2d(4, 4, 3, 1, 4, platform=diana, input_quant=act)
    with pytest.raises(MappingError, match=r"layer 'dw'.*\['analog'\] cannot run"):
        apply_mapping(net, Mapping("diana", ("digital", "analog"), {"dw": (1, 0, 0, 0)}))


def test_model_mapping_is_argmax_with_ties_to_digital(diana):
    net = _Net(diana, search=True)
    with torch.no_grad():
        net.conv.alpha.copy_(torch.tensor([[0.5, 0.1, 0.2, 0.2], [0.4, 0.3, 0.2, 0.1]]))
    m = model_mapping(net, diana)
    assert m.layers["conv"] == (0, 1, 0, 0)
    assert m.layers["fc"] == (0, 0)  # equal init: ties go to digital
