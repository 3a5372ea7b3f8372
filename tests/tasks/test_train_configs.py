# SPDX-License-Identifier: Apache-2.0
"""Every option of every config group composes with the real train.yaml and resolves."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.tasks.helpers import CONF

GROUPS = {
    g: sorted(p.stem for p in (CONF / g).glob("*.yaml"))
    for g in (
        "dataset",
        "model",
        "reg",
        "baseline",
        "trainer",
        "logger",
        "callbacks",
        "experiment",
        "sweep",
        "debug",
    )
}


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["paths.run_dir=/tmp/x", *overrides])
    OmegaConf.resolve(cfg)  # every interpolation must resolve
    return cfg


@pytest.mark.parametrize(
    ("dataset", "model", "reg"),
    list(itertools.product(GROUPS["dataset"], GROUPS["model"], GROUPS["reg"])),
)
def test_dataset_model_reg_combinations(dataset, model, reg):
    cfg = _compose(f"dataset={dataset}", f"model={model}", f"reg={reg}", "strength=1e-6")
    assert cfg.dataset.name == dataset and cfg.model.name == model and cfg.reg.name == reg
    assert isinstance(cfg.strength, float) and cfg.strength == 1e-6
    assert len(cfg.dataset.input_size) == 3 and cfg.dataset.num_classes >= 2


@pytest.mark.parametrize(
    "group", ["baseline", "trainer", "logger", "callbacks", "experiment", "sweep", "debug"]
)
def test_every_option_of_the_other_groups(group):
    assert GROUPS[group], f"conf/{group}/ has no options"
    for option in GROUPS[group]:
        cfg = _compose(f"{group}={option}")
        if group == "baseline":
            assert cfg.baseline.name == option
        if group == "experiment":
            assert cfg.search.epochs > 1 and cfg.trainer.accelerator == "gpu"


def test_defaults_are_the_documented_ones():
    cfg = _compose()
    assert (cfg.dataset.name, cfg.model.name, cfg.reg.name) == ("digits", "res20", "latency")
    assert list(cfg.phases) == ["warmup", "search", "finetune"]
    assert cfg.search.temperature.initial == 1.0 and cfg.search.temperature.decay == 0.045
    assert cfg.search.optim.alpha.name == "adam" and cfg.search.optim.alpha.weight_decay == 0.0
    assert cfg.search.optim.weights.lr == 1e-3 and cfg.search.optim.weights.momentum == 0.9


def test_every_key_of_every_config_file_is_commented():
    """House rule: each config file says what it is and every key has a comment."""
    for path in CONF.rglob("*.yaml"):
        lines = path.read_text().splitlines()
        assert lines and lines[0].startswith("#"), f"{path} has no header comment"
        for previous, line in zip(["#", *lines], lines):
            stripped = line.strip()
            if (
                not stripped
                or stripped.startswith(("#", "-"))
                or stripped.endswith(":")
                or "# " in line
                or previous.strip().startswith("#")
            ):
                continue
            raise AssertionError(f"{path}: key without a comment: {line!r}")


@pytest.mark.parametrize("grid", [g for g in GROUPS["sweep"] if g != "baselines"])
def test_lambda_grids_are_ascending_from_zero_and_match_their_regularizer(grid):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"sweep={grid}"], return_hydra_config=True)
    values = [float(v) for v in str(cfg.hydra.sweeper.params.strength).split(",")]
    assert values[0] == 0.0 and values == sorted(values) and len(set(values)) == len(values)
    target = grid.rsplit("_", 1)[1]  # latency | power
    assert cfg.reg.name == target and cfg.sweep_name.endswith(f"_{target}")
