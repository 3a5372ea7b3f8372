# SPDX-License-Identifier: Apache-2.0
"""integer_reference: the int64 execution equals the mapped network's hard eval to the bit."""

from __future__ import annotations

import pytest
import torch

from odimo.export.integer_reference import integer_reference
from odimo.hw import Diana
from odimo.hw.analog import NoiseConfig
from odimo.quant.adc import readouts, set_readout_noise

from . import chip_mapped as chip_model
from . import inputs, random_mapped


@pytest.mark.parametrize(
    ("name", "kind", "rows"),
    [("res20", "random", 1152), ("res20", "analog", 288), ("mbv1", "random", 1152)],
)
def test_integer_reference_equals_mapped_eval_bit_for_bit(name: str, kind: str, rows: int) -> None:
    model = chip_model(name, kind, rows)
    assert readouts(model), "the chip model must have analog read-outs"
    if rows == 288:  # 64-channel 3x3 layers read out in two tiles of 32 input channels
        assert max(r.tiles for r in readouts(model)) == 2
    x = inputs(name, 16)
    ref = integer_reference(model)
    with torch.no_grad():
        expected, got = model(x), ref(x)
    assert torch.equal(got, expected)


def test_integer_reference_follows_the_seeded_noise() -> None:
    model = chip_model("res20", "random", 288)
    ref = integer_reference(model)
    x = inputs("res20", 8)
    noise = NoiseConfig(sigma_lsb=1.0)
    outs = []
    for net in (model, ref):
        set_readout_noise(net, noise, seed=3)
        with torch.no_grad():
            outs.append(net(x))
    assert torch.equal(outs[0], outs[1])
    set_readout_noise(model, None)
    with torch.no_grad():
        clean = model(x)
    assert not torch.equal(clean, outs[0])  # the noise changes the logits


def test_integer_reference_without_adc_equals_the_exact_network() -> None:
    model, _ = random_mapped("res20", "random")
    x = inputs("res20", 8)
    with torch.no_grad():
        assert torch.equal(integer_reference(model)(x), model(x))
    assert isinstance(model.conv1.platform, Diana)


@pytest.mark.parametrize("area", [4, 49])
def test_a_finer_grid_input_runs_in_int64_only_where_float32_sums_it_exactly(area: int) -> None:
    """A classifier after a global average over `area` positions reads inputs finer than the
    activation grid. Over 2x2 (values k/4) the network's float32 sums are exact and the
    reference runs in int64; over 7x7 (values k/49 >= 1, on a 2^-23 grid) float32 rounds the sums,
    so the reference runs the layer as the network does. Both equal the network bit for bit."""
    from odimo.nn.mapping import quant_layers

    model = chip_model("res20", "analog", 1152)
    ref = integer_reference(model)
    name = list(quant_layers(model))[-1]
    layer, integer = quant_layers(model)[name], dict(ref.named_modules())[name]
    assert layer.readout is not None and integer.float_fallbacks == 0
    g = torch.Generator().manual_seed(0)
    k = torch.randint(area, 127 * area, (64, layer.in_channels, 1, 1), generator=g)  # >= 1
    x = (k.double() / area * layer.input_quant.step().double()).float()
    with torch.no_grad():
        expected, got = layer(x), integer(x)
    assert torch.equal(got, expected)
    assert (integer.float_fallbacks > 0) == (area == 49)
