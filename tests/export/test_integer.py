# SPDX-License-Identifier: Apache-2.0
"""integer_export: integer ranges, exact reconstruction, consistency with the split network."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from odimo.export import integer_export, split_layers, split_model
from odimo.nn import quant_layers
from odimo.quant import UintActPact

from . import random_mapped


@pytest.fixture(scope="module", params=["res20", "mbv1"])
def exported(request: pytest.FixtureRequest):
    model, platform = random_mapped(request.param, "random")
    arrays, quant = integer_export(model, platform)
    return model, platform, arrays, quant


def test_integer_ranges(exported) -> None:
    _, _, arrays, quant = exported
    for entry in quant["layers"]:
        for unit, info in entry["units"].items():
            w, b = arrays[info["weight"]], arrays[info["bias"]]
            assert w.dtype == np.int8 and b.dtype == np.int32
            if unit == "digital":
                assert w.min() >= -127 and w.max() <= 127
            else:
                assert set(np.unique(w).tolist()) <= {-1, 0, 1}
            assert b.min() >= -(2**15) and b.max() <= 2**15 - 1


def test_reconstruction_is_exact(exported) -> None:
    """ints + scales give back the mapped layer's fake-quantized weights and biases."""
    model, _, arrays, quant = exported
    layers = quant_layers(model)
    for entry in quant["layers"]:
        layer = layers[entry["name"]]
        in_order = torch.from_numpy(arrays[entry["in_order"]])
        for unit, info in entry["units"].items():
            u = quant["units"].index(unit)
            rows = torch.from_numpy(arrays[info["channels"]])
            with torch.no_grad():
                weight, bias = layer.unit_weight_bias(u)
            weight = weight[rows]
            if layer.groups == 1:
                weight = weight[:, in_order]
            codes = torch.from_numpy(arrays[info["weight"]]).float()
            if unit == "digital":
                real = codes * 2.0 ** info["range_exp"] / info["levels"]
            else:
                real = codes * torch.from_numpy(arrays[info["scale"]]).view(-1, 1, 1, 1)
            assert torch.equal(real, weight)
            real_bias = torch.from_numpy(arrays[info["bias"]]).float() * torch.from_numpy(
                arrays[info["bias_step"]]
            )
            torch.testing.assert_close(real_bias, bias[rows], rtol=1e-6, atol=0)


def test_orders_and_channels(exported) -> None:
    model, _, arrays, quant = exported
    layers = quant_layers(model)
    assert [e["name"] for e in quant["layers"]] == list(layers)  # execution order
    for entry in quant["layers"]:
        layer = layers[entry["name"]]
        out_order = arrays[entry["out_order"]].tolist()
        assert sorted(out_order) == list(range(layer.out_channels))
        assert sorted(arrays[entry["in_order"]].tolist()) == list(range(layer.in_channels))
        ids = np.concatenate([arrays[i["channels"]] for i in entry["units"].values()])
        assert sorted(ids.tolist()) == list(range(layer.out_channels))
        for unit, info in entry["units"].items():
            u = quant["units"].index(unit)
            assert all(layer.assignment[c] == u for c in arrays[info["channels"]].tolist())
            assert arrays[info["channels"]].tolist() == [
                c for c in out_order if layer.assignment[c] == u
            ]


def test_activations_and_json(exported) -> None:
    model, _, _, quant = exported
    json.dumps(quant)  # plain JSON types only
    acts = {id(m) for m in model.modules() if isinstance(m, UintActPact)}
    assert len(quant["activations"]) == len(acts)
    for entry in quant["activations"].values():
        assert entry["step"] == 2.0 ** -entry["scale_exp"]
        assert 0 < entry["max_level"] <= 127
        assert entry["max_level"] == int(np.floor(entry["clip"] * 2.0 ** entry["scale_exp"]))
    for entry in quant["layers"]:
        assert entry["input_act"] in quant["activations"]
    for add in quant["adds"]:
        assert add["act"] in quant["activations"]


def test_split_weights_are_the_integers(exported) -> None:
    """The split network's convs hold exactly codes × a power of two (digital) or codes."""
    model, platform, arrays, quant = exported
    split = split_layers(split_model(model, platform))
    for entry in quant["layers"]:
        layer = split[entry["name"]]
        for unit, info in entry["units"].items():
            conv = getattr(layer, unit)
            codes = torch.from_numpy(arrays[info["weight"]]).float()
            mult = 2.0 ** info["range_exp"] if unit == "digital" else 1.0
            assert torch.equal(conv.weight, codes * mult)
