# SPDX-License-Identifier: Apache-2.0
"""scikit-learn's embedded 8x8 handwritten digits: 1 797 images, 10 classes, no files needed."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from odimo.data.base import ImageDataModule, check_fraction, check_int, seeded_split
from odimo.data.datasets import TensorImageDataset
from odimo.data.transforms import RandomPadCrop
from odimo.errors import ConfigError

DIGITS_MAX_LEVEL = 16  # load_digits() pixels are integer ink counts 0..16


class DigitsDataModule(ImageDataModule):
    """sklearn ``load_digits()`` as [1, size, size] images in [0, 1] (levels divided by 16).

    ``size`` (a multiple of 8) upsamples each 8x8 image by pixel replication (nearest): the same
    information at a resolution where DIANA's two cores cost differently (at 8x8 every layer's
    feature map is so small that both cost about the same, and there is nothing to decide).

    The whole set is split at random (seeded) into test, validation and training parts. Training
    images are shifted by up to one pixel; they are never flipped (digits are not mirror
    symmetric).

    Args:
        batch_size: images per training batch.
        eval_batch_size: images per validation/test batch; ``None`` uses ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: seed of the split, of the ``limit_train`` subset and of shuffling.
        val_fraction: fraction of all images held out for validation.
        test_fraction: fraction of all images held out for testing.
        augment: shift training images at random by up to ``crop_padding`` pixels.
        limit_train: keep only this many training images (seeded subset); ``None`` keeps all.
        crop_padding: largest random shift in pixels (zero-pad, then crop back), at ``size``.
        size: image side in pixels, a multiple of 8 (8: the original images).
    """

    name = "digits"
    input_size = (1, 8, 8)
    num_classes = 10

    def __init__(
        self,
        *,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        augment: bool = True,
        limit_train: int | None = None,
        crop_padding: int = 1,
        size: int = 8,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            seed=seed,
            val_fraction=val_fraction,
            augment=augment,
            limit_train=limit_train,
        )
        self.test_fraction = check_fraction("test_fraction", test_fraction)
        self.crop_padding = check_int("crop_padding", crop_padding, minimum=0)
        self.size = check_int("size", size, minimum=8)
        if self.size % 8:
            raise ConfigError(
                f"dataset.datamodule.size must be a multiple of 8 (the digits are 8x8 and are "
                f"upsampled by whole pixels), got {size}"
            )
        self.input_size = (1, self.size, self.size)

    def _build_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        from sklearn.datasets import load_digits  # local: sklearn is slow to import

        bunch = load_digits()
        images = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)  # [N, 1, 8, 8]
        k = self.size // 8
        images = images.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3)
        labels = torch.from_numpy(bunch.target.astype(np.int64))
        test_idx, val_idx, train_idx = seeded_split(
            len(labels), [self.test_fraction, self.val_fraction], self.seed
        )
        transform = RandomPadCrop(self.crop_padding) if self.augment else None

        def part(idx: torch.Tensor, augment: bool = False) -> TensorImageDataset:
            return TensorImageDataset(
                images[idx],
                labels[idx],
                max_value=DIGITS_MAX_LEVEL,
                transform=transform if augment else None,
            )

        return part(train_idx, augment=True), part(val_idx), part(test_idx)
