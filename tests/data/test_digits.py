# SPDX-License-Identifier: Apache-2.0
"""Tests of the sklearn digits datamodule."""

import pytest
import torch
from sklearn.datasets import load_digits

from odimo.data import DigitsDataModule, seeded_split


def split_images(seed: int) -> list[torch.Tensor]:
    """The images of the train, val and test splits, stacked in split order."""
    dm = DigitsDataModule(seed=seed, augment=False)
    dm.setup("fit")
    splits = (dm.train_set, dm.val_set, dm.test_set)
    return [torch.stack([s[i][0] for i in range(len(s))]) for s in splits]


def test_split_sizes_add_up_and_are_disjoint() -> None:
    dm = DigitsDataModule(seed=0, augment=False)
    dm.setup("fit")
    sizes = [len(dm.train_set), len(dm.val_set), len(dm.test_set)]
    assert sizes == [1258, 180, 359]
    assert sum(sizes) == 1797
    test_idx, val_idx, train_idx = seeded_split(1797, [0.2, 0.1], seed=0)
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    assert not set(train_idx.tolist()) & set(test_idx.tolist())
    assert not set(val_idx.tolist()) & set(test_idx.tolist())
    # the datasets hold exactly those images, in that order
    images = torch.from_numpy(load_digits().images).float() / 16
    assert torch.equal(dm.val_set[0][0][0], images[val_idx[0]])
    assert torch.equal(dm.test_set[5][0][0], images[test_idx[5]])


def test_split_is_deterministic_per_seed() -> None:
    a, b, c = split_images(0), split_images(0), split_images(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[1], c[1])


def test_values_shapes_and_dtypes() -> None:
    dm = DigitsDataModule(batch_size=32, eval_batch_size=100)
    dm.setup("fit")
    for loader, size in ((dm.train_dataloader(), 32), (dm.val_dataloader(), 100)):
        x, y = next(iter(loader))
        assert x.shape == (size, 1, 8, 8)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert set(y.tolist()) <= set(range(10))
    x, _ = next(iter(dm.val_dataloader()))
    assert x.max() == 1.0  # 16/16: full range reached, not 0..16


def test_val_and_test_are_not_augmented() -> None:
    dm = DigitsDataModule(eval_batch_size=64)
    dm.setup("fit")
    for loader in (dm.val_dataloader, dm.test_dataloader):
        first = torch.cat([x for x, _ in loader()])
        second = torch.cat([x for x, _ in loader()])
        assert torch.equal(first, second)
    plain = DigitsDataModule(augment=False)
    plain.setup("fit")
    assert torch.equal(dm.val_set[3][0], plain.val_set[3][0])


def test_train_augmentation_shifts_some_images() -> None:
    augmented = DigitsDataModule(seed=0)
    plain = DigitsDataModule(seed=0, augment=False)
    augmented.setup("fit")
    plain.setup("fit")
    torch.manual_seed(0)
    changed = 0
    for i in range(100):
        a, label_a = augmented.train_set[i]
        p, label_p = plain.train_set[i]
        assert label_a == label_p
        assert a.shape == p.shape == (1, 8, 8)
        # a shift by at most one pixel: content shrinks or stays, never grows
        assert a.sum() <= p.sum() + 1e-6
        changed += not torch.equal(a, p)
    assert changed > 30
    # plain training images are stable
    assert torch.equal(plain.train_set[0][0], plain.train_set[0][0])


def test_size_replicates_each_pixel_into_a_block() -> None:
    """size=16: each image is the 8x8 one with every pixel a 2x2 block (an independent
    upsampling with F.interpolate, nearest), same labels, same split."""
    import torch.nn.functional as F

    small = DigitsDataModule(seed=0, augment=False)
    big = DigitsDataModule(seed=0, augment=False, size=16)
    small.setup("fit")
    big.setup("fit")
    assert big.input_size == (1, 16, 16)
    for i in range(5):
        (a, la), (b, lb) = small.val_set[i], big.val_set[i]
        assert la == lb and b.shape == (1, 16, 16)
        assert torch.equal(b, F.interpolate(a[None], scale_factor=2, mode="nearest")[0])


@pytest.mark.parametrize("size", [12, 4])
def test_size_must_be_a_multiple_of_8(size: int) -> None:
    from odimo.errors import ConfigError

    with pytest.raises(ConfigError, match="size"):
        DigitsDataModule(size=size)
