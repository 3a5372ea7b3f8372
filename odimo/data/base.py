# SPDX-License-Identifier: Apache-2.0
"""Base datamodule: seeded splits, augmentation of the train split only, uniform loaders."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset

from odimo.errors import ConfigError


def check_fraction(name: str, value: float) -> float:
    """Return ``value`` as a float if it lies strictly between 0 and 1, else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum`` (bools rejected), else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class EpochRandomSampler(RandomSampler):
    """A random order that is a function of (seed, epoch) alone.

    Lightning calls `set_epoch` before every training epoch, and the permutation is drawn when
    iteration starts, so a run resumed at epoch e sees the same order as an uninterrupted one.
    Under DDP Lightning replaces it by a shuffling `DistributedSampler` (it is a RandomSampler).
    """

    def __init__(self, data_source: Dataset, seed: int):
        super().__init__(data_source)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of `epoch` (called by Lightning at the start of each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


def seeded_split(total: int, fractions: Sequence[float], seed: int) -> list[Tensor]:
    """Split ``range(total)`` at random into held-out parts and the rest.

    A permutation drawn from ``torch.Generator().manual_seed(seed)`` is cut from the front: the
    first ``round(total * fractions[0])`` indices form part 0, and so on; the remainder comes
    last. Listing the test fraction first keeps the test set fixed when the validation fraction
    changes.

    Args:
        total: number of items.
        fractions: fraction of ``total`` in each held-out part.
        seed: seed of the permutation.

    Returns:
        ``len(fractions) + 1`` index tensors (held-out parts in order, then the rest), disjoint
        and covering ``range(total)``.

    Raises:
        ConfigError: a fraction outside (0, 1), or a part that would be empty.
    """
    sizes = [round(total * check_fraction("split fraction", f)) for f in fractions]
    rest = total - sum(sizes)
    if min(sizes, default=1) < 1 or rest < 1:
        raise ConfigError(
            f"cannot split {total} items into parts {sizes} plus {rest} left for training: "
            "every part needs at least one item (change the fractions)"
        )
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return list(torch.split(perm, [*sizes, rest]))


class ImageDataModule(LightningDataModule):
    """Classification images as float32 [C, H, W] in [0, 1], split into train / val / test.

    Subclasses set the class attributes and implement :meth:`_build_splits`. The train loader
    shuffles with a generator seeded by ``seed``; val and test loaders never shuffle, and only
    the train split is augmented.

    Args:
        batch_size: images per training batch.
        eval_batch_size: images per validation/test batch; ``None`` uses ``batch_size``.
        num_workers: DataLoader worker processes (0 loads in the main process).
        seed: seed of the train/val split, of the ``limit_train`` subset and of shuffling.
        val_fraction: fraction held out for validation (of the whole dataset or of the official
            training set; see each subclass).
        augment: augment the training split.
        limit_train: keep only this many training images (a seeded random subset) for quick
            runs; ``None`` keeps all.
    """

    name: str = "image"
    input_size: tuple[int, int, int] = (0, 0, 0)
    num_classes: int = 0

    def __init__(
        self,
        *,
        batch_size: int,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        augment: bool = True,
        limit_train: int | None = None,
    ) -> None:
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size)
        self.eval_batch_size = (
            batch_size if eval_batch_size is None else check_int("eval_batch_size", eval_batch_size)
        )
        self.num_workers = check_int("num_workers", num_workers, minimum=0)
        self.seed = check_int("seed", seed, minimum=0)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.augment = bool(augment)
        self.limit_train = None if limit_train is None else check_int("limit_train", limit_train)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def _build_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        """Read the data and return the (train, val, test) datasets, train augmented if asked."""
        raise NotImplementedError(f"{type(self).__name__} must implement _build_splits")

    def setup(self, stage: str | None = None) -> None:
        """Build all three splits once; later calls (``test`` after ``fit``) reuse them."""
        if self.train_set is not None:
            return
        train, val, test = self._build_splits()
        if self.limit_train is not None and self.limit_train < len(train):
            generator = torch.Generator().manual_seed(self.seed + 1)
            keep = torch.randperm(len(train), generator=generator)[: self.limit_train]
            train = Subset(train, keep.sort().values.tolist())
        self.train_set, self.val_set, self.test_set = train, val, test

    def _ensure_setup(self) -> None:
        if self.train_set is None:
            self.setup()

    def _loader(self, dataset: Dataset, batch_size: int, *, shuffle: bool) -> DataLoader:
        sampler = EpochRandomSampler(dataset, self.seed) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (seeded) and augmented training batches; the last batch may be smaller."""
        self._ensure_setup()
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed order, never augmented."""
        self._ensure_setup()
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches in a fixed order, never augmented."""
        self._ensure_setup()
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)

    def describe(self) -> str:
        """One line with the split sizes (after :meth:`setup`), input size and class count."""
        size = "x".join(str(d) for d in self.input_size)
        head = f"{self.name} ({size}, {self.num_classes} classes)"
        if self.train_set is None:
            return f"{head}: not set up yet"
        train, val, test = (len(s) for s in (self.train_set, self.val_set, self.test_set))
        return f"{head}: train {train}, val {val}, test {test} images"
