# SPDX-License-Identifier: Apache-2.0
"""Tests of the shared datamodule machinery: splits, loaders, transforms, argument checks."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import RandomSampler, SequentialSampler

from odimo.data import DigitsDataModule, seeded_split
from odimo.data.base import check_fraction
from odimo.data.transforms import Compose, RandomHorizontalFlip, RandomPadCrop
from odimo.errors import ConfigError


@settings(max_examples=50, deadline=None)
@given(
    total=st.integers(min_value=3, max_value=500),
    first=st.floats(min_value=0.01, max_value=0.45),
    second=st.floats(min_value=0.01, max_value=0.45),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_seeded_split_is_a_partition(total: int, first: float, second: float, seed: int) -> None:
    try:
        parts = seeded_split(total, [first, second], seed)
    except ConfigError:  # refused exactly when a held-out part or the training rest is empty
        sizes = [round(total * first), round(total * second)]
        assert min(sizes) < 1 or total - sum(sizes) < 1
        return
    assert [len(p) for p in parts[:2]] == [round(total * first), round(total * second)]
    joined = torch.cat(parts)
    assert sorted(joined.tolist()) == list(range(total))


def test_seeded_split_depends_on_seed_only() -> None:
    a = seeded_split(100, [0.2], seed=1)
    b = seeded_split(100, [0.2], seed=1)
    c = seeded_split(100, [0.2], seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0].sort().values, c[0].sort().values)


def test_seeded_split_refuses_empty_parts() -> None:
    with pytest.raises(ConfigError, match="at least one item"):
        seeded_split(5, [0.05], seed=0)
    with pytest.raises(ConfigError, match="at least one item"):
        seeded_split(10, [0.5, 0.5], seed=0)


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, True, "0.1"])
def test_check_fraction_rejects(value: object) -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        check_fraction("val_fraction", value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"batch_size": 2.5},
        {"eval_batch_size": 0},
        {"num_workers": -1},
        {"limit_train": 0},
        {"val_fraction": 0.0},
        {"test_fraction": 1.0},
        {"crop_padding": -1},
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        DigitsDataModule(**kwargs)


def test_eval_batch_size_defaults_to_batch_size() -> None:
    assert DigitsDataModule(batch_size=7).eval_batch_size == 7
    assert DigitsDataModule(batch_size=7, eval_batch_size=9).eval_batch_size == 9


def test_loader_settings() -> None:
    dm = DigitsDataModule(batch_size=16, eval_batch_size=32, num_workers=2, seed=3)
    dm.setup("fit")
    train, val, test = dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()
    assert isinstance(train.sampler, RandomSampler)
    # the order is a function of (seed, epoch): the same epoch repeats, the next one differs
    assert train.sampler.seed == 3
    train.sampler.set_epoch(1)
    first, again = list(train.sampler), list(train.sampler)
    train.sampler.set_epoch(2)
    assert first == again and list(train.sampler) != first
    assert sorted(first) == list(range(len(train.dataset)))
    assert isinstance(val.sampler, SequentialSampler)
    assert isinstance(test.sampler, SequentialSampler)
    assert (train.batch_size, val.batch_size, test.batch_size) == (16, 32, 32)
    assert not train.drop_last
    assert train.persistent_workers and val.persistent_workers
    assert train.pin_memory == torch.cuda.is_available()
    plain = DigitsDataModule(num_workers=0).val_dataloader()
    assert not plain.persistent_workers


def test_worker_processes_load_the_same_batches() -> None:
    in_process = DigitsDataModule(eval_batch_size=500, num_workers=0)
    in_workers = DigitsDataModule(eval_batch_size=500, num_workers=1)
    a = next(iter(in_process.val_dataloader()))
    b = next(iter(in_workers.val_dataloader()))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_shuffle_is_seeded() -> None:
    def first_labels(seed: int) -> torch.Tensor:
        torch.manual_seed(0)
        return next(iter(DigitsDataModule(seed=seed, batch_size=50).train_dataloader()))[1]

    assert torch.equal(first_labels(4), first_labels(4))
    assert not torch.equal(first_labels(4), first_labels(5))


def test_limit_train_takes_a_seeded_subset() -> None:
    dm = DigitsDataModule(limit_train=100, seed=1, augment=False)
    dm.setup()
    again = DigitsDataModule(limit_train=100, seed=1, augment=False)
    again.setup()
    assert len(dm.train_set) == 100
    assert len(dm.val_set) == 180 and len(dm.test_set) == 359
    assert torch.equal(dm.train_set[17][0], again.train_set[17][0])


def test_describe_reports_split_sizes() -> None:
    dm = DigitsDataModule()
    assert "not set up" in dm.describe()
    dm.setup("fit")
    assert dm.describe() == "digits (1x8x8, 10 classes): train 1258, val 180, test 359 images"


def test_setup_runs_once() -> None:
    dm = DigitsDataModule()
    dm.setup("fit")
    train = dm.train_set
    dm.setup("test")
    assert dm.train_set is train


def test_random_pad_crop_is_a_shift() -> None:
    image = torch.arange(1, 26, dtype=torch.float32).reshape(1, 5, 5)
    crop = RandomPadCrop(2)
    padded = torch.nn.functional.pad(image, (2, 2, 2, 2))
    windows = {(i, j): padded[:, i : i + 5, j : j + 5] for i in range(5) for j in range(5)}
    seen = set()
    torch.manual_seed(0)
    for _ in range(200):
        out = crop(image)
        assert out.shape == image.shape
        matches = [k for k, w in windows.items() if torch.equal(w, out)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 25  # every shift in [-2, 2]^2 occurs
    assert RandomPadCrop(0)(image) is image


def test_flip_and_compose() -> None:
    image = torch.arange(6, dtype=torch.float32).reshape(1, 2, 3)
    assert torch.equal(RandomHorizontalFlip(1.0)(image), image.flip(-1))
    assert torch.equal(RandomHorizontalFlip(0.0)(image), image)
    both = Compose([RandomHorizontalFlip(1.0), RandomHorizontalFlip(1.0)])
    assert torch.equal(both(image), image)
    assert "RandomHorizontalFlip" in repr(both)


def test_batched_transforms_draw_per_image() -> None:
    image = torch.arange(1, 26, dtype=torch.float32).reshape(1, 5, 5)
    padded = torch.nn.functional.pad(image, (2, 2, 2, 2))
    windows = [padded[:, i : i + 5, j : j + 5] for i in range(5) for j in range(5)]
    torch.manual_seed(1)
    batch = RandomPadCrop(2)(image.expand(64, 1, 5, 5))
    assert batch.shape == (64, 1, 5, 5)
    found = [next(k for k, w in enumerate(windows) if torch.equal(w, b)) for b in batch]
    assert len(set(found)) > 10
    flipped = RandomHorizontalFlip()(image.expand(64, 1, 5, 5))
    is_flipped = [torch.equal(f, image.flip(-1)) for f in flipped]
    assert all(torch.equal(f, image) for f, k in zip(flipped, is_flipped, strict=True) if not k)
    assert 0 < sum(is_flipped) < 64


def test_batched_fetch_matches_single_items() -> None:
    dm = DigitsDataModule(augment=False)
    dm.setup()
    batch = dm.val_set.__getitems__([3, 1, 4])
    for (x, y), i in zip(batch, [3, 1, 4], strict=True):
        assert torch.equal(x, dm.val_set[i][0]) and y == dm.val_set[i][1]


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")
def test_trainer_runs_on_the_datamodule(tmp_path) -> None:
    """Lightning drives setup and the three loaders itself."""
    from lightning.pytorch import LightningModule, Trainer

    class Tiny(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(64, 10)
            self.seen: dict[str, int] = {"train": 0, "val": 0, "test": 0}

        def _step(self, batch, stage: str) -> torch.Tensor:
            x, y = batch
            self.seen[stage] += len(y)
            return torch.nn.functional.cross_entropy(self.fc(x.flatten(1)), y)

        def training_step(self, batch, batch_idx):
            return self._step(batch, "train")

        def validation_step(self, batch, batch_idx):
            self._step(batch, "val")

        def test_step(self, batch, batch_idx):
            self._step(batch, "test")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = DigitsDataModule(batch_size=100, eval_batch_size=1000, limit_train=300)
    model = Tiny()
    trainer = Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    assert model.seen == {"train": 300, "val": 180, "test": 359}
