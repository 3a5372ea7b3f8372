# SPDX-License-Identifier: Apache-2.0
"""The torchvision table: which networks it tries, and that every outcome is a row."""

from __future__ import annotations

import math

import pytest

from odimo.convert.measure import measure_arch
from odimo.convert.zoo import cnn_classifiers, format_zoo, zoo_row


def test_the_zoo_is_torchvisions_classifiers_without_transformers() -> None:
    import torchvision

    names = cnn_classifiers()
    every = torchvision.models.list_models(module=torchvision.models)
    assert {"resnet18", "mobilenet_v2", "convnext_tiny", "regnet_y_400mf"} <= set(names)
    assert not [n for n in names if n.startswith(("vit_", "swin_", "maxvit"))]
    # nothing else left out: the transformers are the only difference
    assert sorted(set(every) - set(names)) == sorted(
        n for n in every if n.startswith(("vit_", "swin_", "maxvit"))
    )


def test_a_converted_row_has_the_baselines_costs(diana) -> None:
    row = zoo_row("squeezenet1_0", (32,), 10, diana, timeout_s=300, max_params_m=150)
    expected = measure_arch("squeezenet1_0", (3, 32, 32), 10, diana)
    assert row.status == "converted" and row.size == 32 and row.layers == expected.layers
    assert row.all_digital_ms == pytest.approx(expected.baselines["all_digital"][0])
    assert row.min_latency_ms == pytest.approx(expected.baselines["min_latency"][0])
    assert row.min_latency_ms < row.all_digital_ms


def test_refused_too_big_and_timeout_are_rows(diana) -> None:
    refused = zoo_row("mobilenet_v3_small", (32,), 10, diana, timeout_s=300, max_params_m=150)
    assert refused.status == "refused (also with ReLU substituted)"
    assert "Hardsigmoid" in refused.detail and math.isnan(refused.all_digital_ms)
    big = zoo_row("resnet18", (32,), 10, diana, timeout_s=300, max_params_m=1)
    assert big.status == "too big" and "11 M parameters" in big.detail
    slow = zoo_row("resnet18", (32,), 10, diana, timeout_s=0.01, max_params_m=150)
    assert slow.status == "timeout"
    table = format_zoo([refused, big, slow])
    assert table.count("\n") == 4 and "| too big |" in table and "| timeout |" in table


def test_a_builder_the_meta_device_cannot_run_converts(diana) -> None:
    """torchvision's RegNets compute their widths with tensors, which the meta device refuses:
    the quantized forms are then built on the CPU, with every conv and linear a layer."""
    import torchvision
    from torch import nn

    from odimo.hw import record_geometry
    from odimo.models import ModelSpec, build_model

    spec = ModelSpec("torchvision", (3, 32, 32), 10, (("arch", "regnet_x_400mf"),))
    mapped = build_model(spec, "mapped", diana)
    source = torchvision.models.regnet_x_400mf(num_classes=10)
    layers = [m for m in source.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(record_geometry(mapped, spec.input_size)) == len(layers)
