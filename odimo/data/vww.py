# SPDX-License-Identifier: Apache-2.0
"""Visual Wake Words (person / no person, 96x96 RGB) from MLPerf-Tiny's ``vw_coco2014_96/``."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from odimo.data.base import ImageDataModule, check_fraction, check_int, seeded_split
from odimo.data.datasets import ImageFileDataset, list_images
from odimo.data.transforms import Compose, RandomHorizontalFlip, RandomPadCrop
from odimo.errors import DatasetNotFoundError

IMAGE_SIDE = 96
CLASS_DIRS = ("non_person", "person")  # label = position: non_person 0, person 1


def list_vww(root: Path) -> tuple[list[Path], list[int]]:
    """Files and labels of ``root/non_person/*`` (0) and ``root/person/*`` (1), sorted by name.

    Raises:
        DatasetNotFoundError: a class folder is missing or holds no images.
    """
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(CLASS_DIRS):
        folder = root / name
        images = list_images(folder) if folder.is_dir() else []
        if not images:
            raise DatasetNotFoundError(
                f"Visual Wake Words not found: no images in {folder.absolute()} (expected "
                f"{root.absolute()}/person/ and {root.absolute()}/non_person/ with image "
                "files). Build vw_coco2014_96 with MLPerf-Tiny's visual wake words dataset "
                "script and set dataset.datamodule.root=<path of vw_coco2014_96>."
            )
        files.extend(images)
        labels.extend([label] * len(images))
    return files, labels


class VisualWakeWordsDataModule(ImageDataModule):
    """Visual Wake Words as [3, 96, 96] images in [0, 1]; label 1 when a person is visible.

    Images of any size are resized to 96x96. All images are split at random (seeded) into test,
    validation and training parts (10/10/80 by default). Only training images are augmented
    (random crop with zero padding ``crop_padding`` and a horizontal flip); validation and test
    images never are.

    Args:
        root: the ``vw_coco2014_96`` folder holding ``person/`` and ``non_person/``.
        batch_size: images per training batch.
        eval_batch_size: images per validation/test batch; ``None`` uses ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: seed of the split, of the ``limit_train`` subset and of shuffling.
        val_fraction: fraction of all images held out for validation.
        test_fraction: fraction of all images held out for testing.
        augment: random crop and horizontal flip on the training split.
        limit_train: keep only this many training images (seeded subset); ``None`` keeps all.
        crop_padding: zero padding in pixels of the random 96x96 crop.
    """

    name = "vww"
    input_size = (3, IMAGE_SIDE, IMAGE_SIDE)
    num_classes = len(CLASS_DIRS)

    def __init__(
        self,
        *,
        root: str | None = "data/vw_coco2014_96",
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        augment: bool = True,
        limit_train: int | None = None,
        crop_padding: int = 8,
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
        self.root = Path("data/vw_coco2014_96" if root is None else root).expanduser()
        self.test_fraction = check_fraction("test_fraction", test_fraction)
        self.crop_padding = check_int("crop_padding", crop_padding, minimum=0)

    def prepare_data(self) -> None:
        """Fail early, with instructions, when the folders are missing."""
        list_vww(self.root)

    def _build_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        files, labels = list_vww(self.root)
        test_idx, val_idx, train_idx = seeded_split(
            len(files), [self.test_fraction, self.val_fraction], self.seed
        )
        transform = (
            Compose([RandomPadCrop(self.crop_padding), RandomHorizontalFlip()])
            if self.augment
            else None
        )

        def part(idx: list[int], augment: bool = False) -> ImageFileDataset:
            return ImageFileDataset(
                [files[i] for i in idx],
                [labels[i] for i in idx],
                size=(IMAGE_SIDE, IMAGE_SIDE),
                transform=transform if augment else None,
            )

        return (
            part(train_idx.tolist(), augment=True),
            part(val_idx.tolist()),
            part(test_idx.tolist()),
        )
