# SPDX-License-Identifier: Apache-2.0
"""ModelSpec: the label reports show."""

from __future__ import annotations


def test_spec_label_tells_converted_and_sampled_networks_apart():
    from odimo.models import ModelSpec
    from odimo.models.build import make_options

    def spec(name, **options):
        return ModelSpec(name, (3, 32, 32), 10, make_options(options))

    assert spec("res20").label == "res20"
    converted = spec("torchvision", arch="mobilenet_v2", weights=None)
    assert converted.label == "torchvision:mobilenet_v2"
    assert spec("custom", target="pkg.nets:cnn").label == "custom:pkg.nets:cnn"
    assert spec("sampled", space="resnet", law="s3", id=17).label == "sampled:resnet/s3/17"
