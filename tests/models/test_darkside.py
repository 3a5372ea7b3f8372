# SPDX-License-Identifier: Apache-2.0
"""The Darkside network: its shape, its cost report (equal to the formulas) and its export."""

from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from odimo.errors import ConfigError, MappingError
from odimo.export import split_model
from odimo.hw import get_platform, record_geometry
from odimo.models import build_model, searchable_names
from odimo.models.build import ModelSpec
from odimo.nn import apply_mapping
from odimo.nn.baselines import baseline_mapping
from odimo.tasks.cost_report import run as cost_report_run
from tests.hw.test_darkside import ref_cluster, ref_dwe
from tests.tasks.helpers import CONF


def report(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("cost_report", ["platform=darkside", "model=darkside_mbv1", *overrides])
    return cost_report_run(cfg)


@pytest.mark.parametrize("width", [8, 16, 32])
def test_eight_slots_with_the_documented_widths(width):
    spec = ModelSpec("darkside_mbv1", (3, 32, 32), 10, (("width", width),))
    geometry = record_geometry(build_model(spec, "float"), spec.input_size)
    slots = [g for g in geometry if g.operator_choice]
    assert [g.c_out for g in slots] == [4 * width, 8 * width] + [16 * width] * 5 + [32 * width]
    assert [g.o_x for g in slots] == [8, 4, 2, 2, 2, 2, 2, 1]  # CIFAR stem stride 2
    assert all(g.c_in == g.c_out and g.k_x == 3 and g.stride == 1 for g in slots)
    assert geometry[0].o_x == 16 and geometry[-1].c_out == 10


@pytest.mark.parametrize("mapping", ["all_conv", "all_depthwise", "even_split"])
def test_cost_report_equals_the_formulas(tmp_path, mapping):
    out = tmp_path / "r.json"
    rep = report("model.width=16", "dataset=cifar10", f"mapping={mapping}", f"output={out}")
    assert json.loads(out.read_text())["latency_cycles"] == rep["latency_cycles"]
    total = 0.0
    for row in rep["layers"]:
        from odimo.hw import LayerGeometry

        g = LayerGeometry(**{k: row[k] for k in LayerGeometry.__dataclass_fields__})
        k, m = row["ch_cluster"], row["ch_dwe"]
        if g.operator_choice:
            half = g.c_out // 2
            assert (k, m) == {
                "all_conv": (g.c_out, 0),
                "all_depthwise": (0, g.c_out),
                "even_split": (half, half),
            }[mapping]
        t_c, t_d = ref_cluster(g, k), ref_dwe(g, m)
        assert (row["cycles_cluster"], row["cycles_dwe"]) == (t_c, t_d)
        total += max(t_c, t_d)
    assert rep["latency_cycles"] == total


def test_depthwise_is_much_faster_and_soft_mean_is_an_option():
    conv = report("dataset=cifar10", "mapping=all_conv")
    depth = report("dataset=cifar10", "mapping=all_depthwise")
    assert conv["latency_cycles"] > 10 * depth["latency_cycles"]
    even_max = report("dataset=cifar10", "mapping=even_split")
    even_mean = report("dataset=cifar10", "mapping=even_split", "platform.latency=soft_mean")
    assert even_mean["latency_cycles"] < even_max["latency_cycles"]
    with pytest.raises(MappingError, match="unknown mapping 'io_digital'.*all_depthwise"):
        report("dataset=cifar10", "mapping=io_digital")
    with pytest.raises(ConfigError, match="model.width must be one of"):
        report("dataset=cifar10", "model.width=12")


def test_split_export_of_a_mixed_slot_equals_the_mapped_network():
    torch.manual_seed(0)
    platform = get_platform("darkside")
    spec = ModelSpec("darkside_mbv1", (3, 32, 32), 10, (("width", 8),))
    model = build_model(spec, "mapped", platform)
    geometry = record_geometry(model, spec.input_size)
    for m in model.modules():
        if hasattr(m, "init_quantizers"):
            m.init_quantizers()
    free = searchable_names(model)
    assert len(free) == 8
    apply_mapping(model, baseline_mapping("even_split", geometry, platform, free))
    model.eval()
    x = torch.rand(4, *spec.input_size)
    with torch.no_grad():
        assert (split_model(model, platform)(x) - model(x)).abs().max() <= 1e-5
