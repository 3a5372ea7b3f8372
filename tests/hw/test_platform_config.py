# SPDX-License-Identifier: Apache-2.0
"""Platforms from config: DIANA's YAML is the default exactly; calibrated YAMLs build platforms."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from odimo.errors import ConfigError
from odimo.hw import (
    Diana,
    DianaConstants,
    GeometryTable,
    LayerGeometry,
    get_platform,
    platform_from_config,
    platform_to_config,
)
from odimo.hw.config import PLATFORM_CONF_DIR
from tests.reference import RefCost
from tests.tasks.helpers import train_cfg


def test_diana_yaml_holds_exactly_the_default_constants():
    from_yaml = get_platform("diana")
    assert asdict(from_yaml.constants) == asdict(DianaConstants())
    assert from_yaml.name == "diana" and from_yaml.cheap_unit == "analog"
    assert (PLATFORM_CONF_DIR / "diana.yaml").is_file()


def test_golden_layer_costs_through_the_yaml_platform():
    g = LayerGeometry("l", 16, 16, 3, 3, 1, 1, 32, 32)
    t = GeometryTable([g], dtype=torch.float64)
    counts = torch.tensor([[10.0, 6.0]], dtype=torch.float64)
    cycles = get_platform("diana").unit_cycles(counts, t)[0]
    assert float(cycles[0]) == RefCost.digital(g, 10)
    assert float(cycles[1]) == pytest.approx(RefCost.analog(g, 6), rel=1e-15)
    assert float(get_platform("diana").unit_cycles(counts, t)[0, 0]) == 13312.0 - 32 * 32 * 6 / 8


def test_round_trip_and_cheap_unit_from_config():
    cfg = platform_to_config(Diana(constants=DianaConstants(analog_pass_cycles=20.0), name="x"))
    back = platform_from_config(cfg)
    assert back.name == "x" and back.constants.analog_pass_cycles == 20.0
    assert back.cheap_unit_index() == 1 and back.precise_unit_index() == 0
    swapped = platform_from_config({**cfg, "cheap_unit": "digital"})
    assert swapped.cheap_unit_index() == 0 and swapped.precise_unit_index() == 1


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"name": "x", "kind": "diana", "constants": {"clock": 1.0}}, "unknown constant 'clock'"),
        ({"name": "x", "kind": "diana", "constants": {"freq_hz": -1.0}}, "freq_hz must be > 0"),
        ({"name": "x", "kind": "tpu"}, "unknown platform kind 'tpu'"),
        ({"name": "x"}, "needs kind"),
        ({"name": "x", "kind": "diana", "cheap_unit": "optical"}, "no unit 'optical'"),
    ],
)
def test_bad_platform_config_is_one_clear_error(cfg, message):
    with pytest.raises(ConfigError, match=message):
        platform_from_config(cfg)


def test_train_config_group_builds_the_platform(tmp_path):
    cfg = train_cfg(tmp_path, "platform=diana")
    platform = get_platform(cfg.platform)
    assert isinstance(platform, Diana) and asdict(platform.constants) == asdict(DianaConstants())
    cfg = train_cfg(tmp_path, "platform.constants.analog_pass_cycles=30.0")
    assert get_platform(cfg.platform).constants.analog_pass_cycles == 30.0
