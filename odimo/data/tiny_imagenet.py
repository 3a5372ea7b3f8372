# SPDX-License-Identifier: Apache-2.0
"""Tiny ImageNet (64x64 RGB, 200 classes) from the standard ``tiny-imagenet-200/`` folder."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from odimo.data.base import ImageDataModule, check_int, seeded_split
from odimo.data.datasets import ImageFileDataset, list_images
from odimo.data.transforms import Compose, RandomHorizontalFlip, RandomPadCrop
from odimo.errors import DatasetNotFoundError

IMAGE_SIDE = 64
HOW_TO_GET = (
    "Download tiny-imagenet-200.zip (http://cs231n.stanford.edu/tiny-imagenet-200.zip), unzip "
    "it, and set dataset.datamodule.root=<path of tiny-imagenet-200>."
)


def read_wnids(root: Path) -> list[str]:
    """Class ids from ``wnids.txt``, sorted (label k is the k-th id in sorted order, as with a
    class-per-folder loader)."""
    path = root / "wnids.txt"
    if not path.is_file():
        raise DatasetNotFoundError(
            f"Tiny ImageNet not found: {path.absolute()} does not exist (expected the "
            f"tiny-imagenet-200/ folder with wnids.txt, train/ and val/). {HOW_TO_GET}"
        )
    wnids = sorted({line.strip() for line in path.read_text().splitlines() if line.strip()})
    if not wnids:
        raise DatasetNotFoundError(f"Tiny ImageNet: {path} lists no classes. {HOW_TO_GET}")
    return wnids


def list_train(root: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """Files and labels of ``train/<wnid>/images/*``, in class then name order."""
    files: list[Path] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images"
        images = list_images(folder) if folder.is_dir() else []
        if not images:
            raise DatasetNotFoundError(
                f"Tiny ImageNet: no training images in {folder.absolute()} (class {wnid} of "
                f"wnids.txt). {HOW_TO_GET}"
            )
        files.extend(images)
        labels.extend([label] * len(images))
    return files, labels


def list_val(root: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """Files and labels of the official validation set (``val/images`` + annotations)."""
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DatasetNotFoundError(
            f"Tiny ImageNet: {annotations.absolute()} does not exist (it labels the official "
            f"validation images, used as the test set). {HOW_TO_GET}"
        )
    index = {wnid: k for k, wnid in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DatasetNotFoundError(
                f"Tiny ImageNet: line {number} of {annotations} is not '<file>\\t<wnid>...' with "
                f"a wnid from wnids.txt: {line!r}"
            )
        files.append(root / "val" / "images" / fields[0])
        labels.append(index[fields[1]])
    if not files:
        raise DatasetNotFoundError(f"Tiny ImageNet: {annotations} lists no images. {HOW_TO_GET}")
    return sorted_pairs(files, labels)


def sorted_pairs(files: list[Path], labels: list[int]) -> tuple[list[Path], list[int]]:
    """Sort files by name, keeping each label with its file."""
    pairs = sorted(zip(files, labels, strict=True))
    return [f for f, _ in pairs], [label for _, label in pairs]


class TinyImageNetDataModule(ImageDataModule):
    """Tiny ImageNet as [3, 64, 64] images in [0, 1] (grayscale files converted to RGB).

    The official training images are split at random (seeded) 90/10 into training and
    validation; the official validation images (labelled by ``val/val_annotations.txt``) are the
    test set. Training images get a random crop (zero padding ``crop_padding``) and a horizontal
    flip. Images are decoded on access, so use several workers.

    Args:
        root: the ``tiny-imagenet-200`` folder.
        batch_size: images per training batch.
        eval_batch_size: images per validation/test batch; ``None`` uses ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: seed of the split, of the ``limit_train`` subset and of shuffling.
        val_fraction: fraction of the official training set held out for validation.
        augment: random crop and horizontal flip on the training split.
        limit_train: keep only this many training images (seeded subset); ``None`` keeps all.
        crop_padding: zero padding in pixels of the random 64x64 crop.
    """

    name = "tiny_imagenet"
    input_size = (3, IMAGE_SIDE, IMAGE_SIDE)
    num_classes = 200

    def __init__(
        self,
        *,
        root: str | None = "data/tiny-imagenet-200",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        augment: bool = True,
        limit_train: int | None = None,
        crop_padding: int = 4,
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
        self.root = Path("data/tiny-imagenet-200" if root is None else root).expanduser()
        self.crop_padding = check_int("crop_padding", crop_padding, minimum=0)
        self.classes: list[str] = []

    def prepare_data(self) -> None:
        """Fail early, with instructions, when the folder is missing."""
        read_wnids(self.root)

    def _build_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        wnids = read_wnids(self.root)
        if len(wnids) > self.num_classes:
            raise DatasetNotFoundError(
                f"Tiny ImageNet: {self.root / 'wnids.txt'} lists {len(wnids)} classes, more than "
                f"the {self.num_classes} this dataset has"
            )
        self.classes = wnids
        files, labels = list_train(self.root, wnids)
        test_files, test_labels = list_val(self.root, wnids)
        val_idx, train_idx = seeded_split(len(files), [self.val_fraction], self.seed)
        size = (IMAGE_SIDE, IMAGE_SIDE)
        transform = (
            Compose([RandomPadCrop(self.crop_padding), RandomHorizontalFlip()])
            if self.augment
            else None
        )

        def part(idx: list[int], augment: bool = False) -> ImageFileDataset:
            return ImageFileDataset(
                [files[i] for i in idx],
                [labels[i] for i in idx],
                size=size,
                transform=transform if augment else None,
            )

        train = part(train_idx.tolist(), augment=True)
        val = part(val_idx.tolist())
        test = ImageFileDataset(test_files, test_labels, size=size)
        return train, val, test
