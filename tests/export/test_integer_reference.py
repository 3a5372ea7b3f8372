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
