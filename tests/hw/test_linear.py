# SPDX-License-Identifier: Apache-2.0
"""The linear N-unit platform (conf/platform/toy3.yaml): costs equal its formulas."""

from __future__ import annotations

import pytest
import torch

from odimo.errors import ConfigError
from odimo.hw import GeometryTable, LayerGeometry, get_platform, platform_from_config


def ref_cycles(g: LayerGeometry, counts: list[int]) -> list[float]:
    """setup·[c>=1] + ⌈c/lanes⌉·MACs-per-lane-group·mac_cycles, per unit of toy3.yaml."""
    setup, lanes, mac = (0.0, 200.0, 100.0), (2, 4, 1), (1.0, 1.0, 0.5)
    fan = g.c_in // g.groups * g.k_x * g.k_y * g.o_x * g.o_y
    return [
        (setup[u] if c else 0.0) + -(-c // lanes[u]) * fan * mac[u] for u, c in enumerate(counts)
    ]


@pytest.mark.parametrize("counts", [[16, 0, 0], [5, 6, 5], [0, 16, 0], [1, 0, 15]])
def test_toy3_costs_equal_the_formulas(counts):
    p = get_platform("toy3")
    g = LayerGeometry("l", 8, 16, 3, 3, 1, 1, 6, 5)
    cost = p.evaluate(
        torch.tensor([counts], dtype=torch.float64), GeometryTable([g]).to(dtype=torch.float64)
    )
    ref = ref_cycles(g, counts)
    assert cost.unit_cycles[0].tolist() == pytest.approx(ref, rel=1e-12)
    assert float(cost.latency_cycles[0]) == pytest.approx(max(ref))
    energy = 20.0 * ref[0] + 8.0 * ref[1] + 14.0 * ref[2]
    assert float(cost.energy_mw_cycles[0]) == pytest.approx(energy)


def test_toy3_roles_and_bad_unit_lists():
    p = get_platform("toy3")
    assert p.unit_names == ("big", "tern", "aux")
    assert (p.precise_unit_index(), p.cheap_unit_index(), p.role_index("aux")) == (0, 1, 2)
    assert set(p.baselines()) >= {"all_big", "all_tern", "all_aux", "min_latency"}
    cfg = {
        "name": "bad",
        "kind": "linear",
        "units": [{"name": "a", "weight_format": "int8_pow2", "role": "cheap"}] * 2,
        "constants": {
            "setup_cycles": [0, 0],
            "lanes": [1, 1],
            "mac_cycles": [1, 1],
            "power_mw": [1, 1],
        },
    }
    with pytest.raises(ConfigError, match="role precise"):
        platform_from_config(cfg)
    cfg["units"] = cfg["units"][:1]
    with pytest.raises(ConfigError, match="1 units but constants for 2"):
        platform_from_config(cfg)
