# SPDX-License-Identifier: Apache-2.0
"""What the cascade's expected cost rests on: DIANA's analog latency charges the weight load of
each analog layer in every inference, so a cascade that alternates two networks pays no reload
beyond what each network's own per-inference cost already holds (docs/cascade.md)."""

from __future__ import annotations

import torch

from odimo.hw import GeometryTable, LayerGeometry
from odimo.hw.diana import ANALOG_PASS_CYCLES, analog_cycles, analog_terms

F64 = torch.float64


def test_every_analog_layer_pays_its_weight_load_in_every_inference() -> None:
    # two 3x3 layers of 64 input channels on 8x8 maps: each alone fills most of the array
    # (64·9 = 576 of 1152 rows, with unroll 4 as many as 1152 used): the array is rewritten
    # per layer, so no network's weights can stay resident between two inferences
    layers = [LayerGeometry(f"l{i}", 64, 32, 3, 3, 1, 1, 8, 8) for i in range(2)]
    geom = GeometryTable(layers, dtype=F64)
    c_a = torch.tensor([32.0, 32.0], dtype=F64)
    rows, passes = analog_terms(c_a, geom)
    assert rows.tolist() == [64 * 9, 64 * 9]  # [c_a >= 1]·C_in·K_x·K_y, once per layer
    # unroll u = 4: u·32 <= 512 and (u + 2)·64·3 <= 1152; 8·8 output pixels / u passes
    assert passes.tolist() == [16.0, 16.0]
    cycles = analog_cycles(c_a, geom)
    assert cycles.tolist() == [8 * 576 + 16 * ANALOG_PASS_CYCLES] * 2
    # a layer with no analog channel loads nothing
    none = analog_cycles(torch.tensor([0.0, 32.0], dtype=F64), geom)
    assert none[0].item() == 0.0 and none[1].item() == cycles[1].item()
