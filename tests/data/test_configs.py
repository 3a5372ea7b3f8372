# SPDX-License-Identifier: Apache-2.0
"""Tests that each ``conf/dataset/*.yaml`` builds its datamodule and agrees with it."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from odimo.data import DATAMODULES, DigitsDataModule, ImageDataModule

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "dataset"
NAMES = sorted(DATAMODULES)


def compose(name: str, seed: int = 7):
    """The dataset group as the main config holds it, with the top-level ``seed`` it refers to."""
    return OmegaConf.create({"seed": seed, "dataset": OmegaConf.load(CONF_DIR / f"{name}.yaml")})


def test_every_dataset_has_a_config() -> None:
    assert sorted(p.stem for p in CONF_DIR.glob("*.yaml")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_config_instantiates_matching_datamodule(name: str) -> None:
    cfg = compose(name).dataset
    dm = instantiate(cfg.datamodule)
    assert type(dm) is DATAMODULES[name]
    assert isinstance(dm, ImageDataModule)
    assert cfg.name == dm.name == name
    assert tuple(cfg.input_size) == dm.input_size
    assert cfg.num_classes == dm.num_classes
    assert dm.seed == 7
    assert dm.batch_size == cfg.datamodule.batch_size
    assert dm.eval_batch_size == cfg.datamodule.eval_batch_size
    assert dm.num_workers == cfg.datamodule.num_workers
    assert dm.augment is True  # training augmentation is on by default


@pytest.mark.parametrize("name", NAMES)
def test_config_is_documented(name: str) -> None:
    lines = (CONF_DIR / f"{name}.yaml").read_text().splitlines()
    assert lines[0].startswith("# ")
    for line in lines[1:]:
        if line.strip() and not line.lstrip().startswith("#"):
            assert " # " in line, f"{name}.yaml: key without a comment: {line!r}"


def test_digits_config_loads_batches_of_its_input_size() -> None:
    cfg = compose("digits").dataset
    cfg.datamodule.num_workers = 0
    dm = instantiate(cfg.datamodule)
    assert isinstance(dm, DigitsDataModule)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (cfg.datamodule.batch_size, *cfg.input_size)
    assert int(y.max()) < cfg.num_classes
    assert x.dtype == torch.float32


def test_fashion_mnist_config_gives_5000_validation_images() -> None:
    fraction = compose("fashion_mnist").dataset.datamodule.val_fraction
    assert round(60000 * fraction) == 5000
