# SPDX-License-Identifier: Apache-2.0
"""Saving and loading a finished mapped network, and the errors for files that are not one."""

from __future__ import annotations

import pytest
import torch

from odimo.errors import CheckpointError
from odimo.hw import get_platform
from odimo.models import ModelSpec, build_model, load_mapped, save_mapped
from odimo.models.io import FORMAT
from odimo.nn import MappedConv2d, apply_mapping, hard_mapping, model_mapping, search_layers
from odimo.nn.mapping import quant_layers

SPEC = ModelSpec("res20", (1, 8, 8), 10)


@pytest.fixture(scope="module")
def mapped():
    """A mapped res20 with a mixed mapping and non-default weights, clips and scales (tests
    only read it)."""
    diana = get_platform("diana")
    torch.manual_seed(0)
    model = build_model(SPEC, "mapped", diana)
    with torch.no_grad():
        for layer in quant_layers(model).values():
            layer.bias.normal_(0, 0.1)
            layer.init_quantizers()
        model.input_act.clip.fill_(0.9)
    mapping = model_mapping(model, diana)
    layers = {n: tuple((i + len(n)) % 2 for i in range(len(a))) for n, a in mapping.layers.items()}
    apply_mapping(model, type(mapping)(mapping.platform, mapping.units, layers))
    return model.eval()


def test_round_trip_gives_identical_outputs(tmp_path, mapped, diana):
    path = tmp_path / "deep" / "model.pt"
    save_mapped(path, mapped, diana)
    model, platform, mapping = load_mapped(path)
    assert platform.name == "diana"
    assert model.spec == SPEC and model.form == "mapped"
    assert mapping == model_mapping(mapped, diana) == model_mapping(model, diana)
    for name, layer in quant_layers(model).items():
        assert layer.active_units() == quant_layers(mapped)[name].active_units()
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), mapped(x))


def test_a_search_model_is_saved_with_its_argmax_mapping(tmp_path, diana):
    search = build_model(SPEC, "search", diana).eval()
    with torch.no_grad():
        for layer in search_layers(search):
            layer.alpha.normal_()
    path = tmp_path / "search.pt"
    save_mapped(path, search, diana)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == FORMAT
    assert not any(k.endswith((".alpha", ".temperature")) for k in payload["state_dict"])
    model, _, mapping = load_mapped(path)
    assert mapping == model_mapping(search, diana)
    assert all(isinstance(m, MappedConv2d) for m in quant_layers(model).values())
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad(), hard_mapping(search):
        assert torch.allclose(model.eval()(x), search(x), atol=1e-5)


def _valid_payload(tmp_path, mapped, diana) -> dict:
    path = tmp_path / "valid.pt"
    save_mapped(path, mapped, diana)
    return torch.load(path, weights_only=True)


def _corrupt(tmp_path, mapped, diana, kind: str):
    path = tmp_path / f"{kind}.pt"
    if kind == "missing":
        return path
    if kind == "garbage":
        path.write_bytes(b"\x00\x01 this is not a checkpoint \xff" * 10)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        save_mapped(path, mapped, diana)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        payload = _valid_payload(tmp_path, mapped, diana)
        if kind == "wrong_format":
            payload["format"] = "odimo.mapped/0"
        elif kind == "not_a_dict":
            payload = [1, 2, 3]
        elif kind == "other_network":
            payload["spec"]["name"] = "mbv1"
        elif kind == "other_shape":
            payload["spec"]["num_classes"] = 7
        elif kind == "no_spec":
            del payload["spec"]
        elif kind == "no_state":
            del payload["state_dict"]
        elif kind == "bad_mapping":
            payload["mapping"]["layers"][0]["assignment"][0] = 5
        elif kind == "unknown_model":
            payload["spec"]["name"] = "vgg"
        elif kind == "unknown_platform":
            payload["platform"] = "tpu"
        torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "garbage",
        "empty",
        "truncated",
        "wrong_format",
        "not_a_dict",
        "other_network",
        "other_shape",
        "no_spec",
        "no_state",
        "bad_mapping",
        "unknown_model",
        "unknown_platform",
    ],
)
def test_bad_files_raise_checkpoint_error_with_the_path(tmp_path, mapped, diana, kind):
    path = _corrupt(tmp_path, mapped, diana, kind)
    with pytest.raises(CheckpointError) as err:
        load_mapped(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)  # one line for the user


def test_messages_say_what_is_wrong(tmp_path, mapped, diana):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_mapped(_corrupt(tmp_path, mapped, diana, "missing"))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_mapped(_corrupt(tmp_path, mapped, diana, "garbage"))
    with pytest.raises(CheckpointError, match="not an odimo mapped model"):
        load_mapped(_corrupt(tmp_path, mapped, diana, "wrong_format"))
    with pytest.raises(CheckpointError, match="does not fit a mbv1 model"):
        load_mapped(_corrupt(tmp_path, mapped, diana, "other_network"))
