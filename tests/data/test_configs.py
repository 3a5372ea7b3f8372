# SPDX-License-Identifier: Apache-2.0
"""Tests that each ``conf/dataset/*.yaml`` builds its datamodule and agrees with it."""

from pathlib import Path

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


def test_every_config_instantiates_its_matching_datamodule() -> None:
    """Each dataset config builds its own datamodule class with the config's values (the
    comments of the files are checked with all configs in tests/test_configs.py)."""
    for name in NAMES:
        cfg = compose(name).dataset
        dm = instantiate(cfg.datamodule)
        assert type(dm) is DATAMODULES[name], name
        assert isinstance(dm, ImageDataModule)
        assert cfg.name == dm.name == name
        assert tuple(cfg.input_size) == dm.input_size, name
        assert cfg.num_classes == dm.num_classes, name
        assert dm.seed == 7, name
        assert dm.batch_size == cfg.datamodule.batch_size, name
        assert dm.eval_batch_size == cfg.datamodule.eval_batch_size, name
        assert dm.num_workers == cfg.datamodule.num_workers, name
        assert dm.augment is True, name  # training augmentation is on by default


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
