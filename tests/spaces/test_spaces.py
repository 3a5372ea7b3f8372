# SPDX-License-Identifier: Apache-2.0
"""Sampled spaces: deterministic draws, nested laws, every form built, hand-checked geometry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from odimo.characterization.catalogue import macs
from odimo.errors import ConfigError
from odimo.hw import get_platform, record_geometry
from odimo.models import ModelSpec, build_model, model_spec, searchable_names
from odimo.nn import MappedConv2d, SearchConv2d
from odimo.spaces import SPACES, get_space, nested_laws, sample
from tests.tasks.helpers import REPO, train_cfg

C10 = (3, 32, 32)


def spec(space: str, law: str, net_id: int, input_size=C10) -> ModelSpec:
    return ModelSpec("sampled", input_size, 10, (("id", net_id), ("law", law), ("space", space)))


@pytest.mark.parametrize("space", sorted(SPACES))
def test_laws_are_nested_and_shrink(space):
    laws = list(SPACES[space].laws.values())
    assert [law.name for law in laws] == ["s0", "s1", "s2", "s3"]
    for wide, narrow in zip(laws, laws[1:]):
        for param, choices in narrow.choices.items():
            assert set(choices) <= set(wide.choices[param]), (space, narrow.name, param)
    sizes = [sum(len(c) for c in law.choices.values()) for law in laws]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


def test_nested_laws_rejects_a_law_wider_than_its_parent():
    params = {"w": (1, 2, 3)}
    with pytest.raises(ValueError, match="keeps 3 choices"):
        nested_laws(params, {"s0": {"w": 2}, "s1": {"w": 3}})


@pytest.mark.parametrize("space", sorted(SPACES))
def test_draws_are_deterministic_distinct_and_inside_the_law(space):
    law = SPACES[space].laws["s2"]
    draws = [sample(space, "s2", i) for i in range(40)]
    assert draws == [sample(space, "s2", i) for i in range(40)]
    assert len({json.dumps(d) for d in draws}) >= 30  # ids give different nets
    for d in draws:
        assert d["stem"] in law.choices["stem"]
        stages = d.get("stages") or d.get("convs")
        widths = [s[1] for s in stages] if "stages" in d else [c[0] for c in stages]
        assert all(w in law.choices["width"] for w in widths)
        strides = [s[-1] for s in stages]
        assert strides.count(2) <= 3 + (space == "probe")


def test_draws_do_not_depend_on_the_process_hash_seed():
    code = (
        "import json; from odimo.spaces import sample; print(json.dumps(sample('resnet','s1',7)))"
    )
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        outs.add(res.stdout.strip())
    assert outs == {json.dumps(sample("resnet", "s1", 7))}


@pytest.mark.parametrize("space", sorted(SPACES))
def test_every_form_builds_and_runs(space):
    platform = get_platform("diana")
    for form in ("float", "search", "mapped"):
        model = build_model(spec(space, "s3", 3), form, platform)
        assert model(torch.randn(2, *C10)).shape == (2, 10)
    search = build_model(spec(space, "s3", 3), "search", platform)
    free = set(searchable_names(search))
    for name, m in search.named_modules():
        if isinstance(m, (SearchConv2d, MappedConv2d)) and m.groups == 1 and name in free:
            assert isinstance(m, SearchConv2d), name


def test_mobilenetv2_depthwise_convs_are_fixed_to_the_precise_unit():
    platform = get_platform("diana")
    model = build_model(spec("mobilenetv2", "s0", 0), "search", platform)
    depthwise = [m for n, m in model.named_modules() if n.endswith(".depth")]
    assert depthwise and all(isinstance(m, MappedConv2d) for m in depthwise)
    assert all(m.groups == m.in_channels > 1 for m in depthwise)


def test_probe_geometry_and_macs_by_hand(monkeypatch):
    args = {"stem": 8, "convs": [[16, 5, 2], [24, 1, 1]]}
    monkeypatch.setattr("odimo.spaces.sample", lambda *a: args)
    model = build_model(spec("probe", "s0", 0), "float")
    geometry = record_geometry(model, C10)
    got = [(g.c_in, g.c_out, g.k_x, g.o_x) for g in geometry]
    assert got == [(3, 8, 3, 32), (8, 16, 5, 16), (16, 24, 1, 16), (24, 10, 1, 1)]
    expected = 3 * 8 * 9 * 32 * 32 + 8 * 16 * 25 * 16 * 16 + 16 * 24 * 16 * 16 + 24 * 10
    assert macs(geometry) == expected


def test_resnet_bottleneck_layers_by_hand(monkeypatch):
    args = {"stem": 8, "stages": [["bottleneck", 32, 1, 2]]}
    monkeypatch.setattr("odimo.spaces.sample", lambda *a: args)
    geometry = record_geometry(build_model(spec("resnet", "s0", 0), "float"), C10)
    names = [(g.name, g.c_in, g.c_out, g.stride, g.o_x) for g in geometry]
    assert names == [
        ("conv1", 3, 8, 1, 32),
        ("backbone.bb_1_0.conv1", 8, 8, 1, 32),
        ("backbone.bb_1_0.conv2", 8, 8, 2, 16),
        ("backbone.bb_1_0.conv3", 8, 32, 1, 16),
        ("backbone.bb_1_0.downsample", 8, 32, 2, 16),
        ("fc", 32, 10, 1, 1),
    ]


@pytest.mark.parametrize(
    "space, law, net_id, message",
    [
        ("vgg", "s0", 0, "unknown space 'vgg'"),
        ("probe", "s9", 0, "unknown law 's9' of space probe"),
        ("probe", "s0", -1, "integer >= 0"),
        ("probe", "s0", "3", "integer >= 0"),
    ],
)
def test_bad_space_law_or_id_is_one_clear_error(space, law, net_id, message):
    with pytest.raises(ConfigError, match=message):
        sample(space, law, net_id)


def test_sampled_model_from_the_hydra_config(tmp_path):
    cfg = train_cfg(
        tmp_path, "model=sampled", "model.space=mobilenetv2", "model.law=s3", "model.id=17"
    )
    got = model_spec(cfg.model, cfg.dataset.input_size, cfg.dataset.num_classes)
    assert got.kwargs == {"space": "mobilenetv2", "law": "s3", "id": 17}
    model = build_model(got, "float")
    assert model.arch == {
        "space": "mobilenetv2",
        "law": "s3",
        "id": 17,
        **sample("mobilenetv2", "s3", 17),
    }
    assert get_space("mobilenetv2").name == "mobilenetv2"
