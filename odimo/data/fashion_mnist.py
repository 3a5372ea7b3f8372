# SPDX-License-Identifier: Apache-2.0
"""Fashion-MNIST (28x28 grayscale, 10 classes, 60k train + 10k test) read from its IDX files."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from odimo.data.base import ImageDataModule, check_int, seeded_split
from odimo.data.datasets import TensorImageDataset
from odimo.data.transforms import RandomPadCrop
from odimo.errors import DatasetNotFoundError

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
IDX_IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_SIDE = 28
NUM_CLASSES = 10


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped when its name ends in ``.gz``).

    Args:
        path: the file.
        magic: expected magic number (2051 for images, 2049 for labels).

    Returns:
        uint8 array of the shape the header gives.

    Raises:
        DatasetNotFoundError: unreadable, truncated or wrong-format file (the message names it).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise _corrupt(path, f"cannot be read ({err})") from err
    if len(raw) < 4:
        raise _corrupt(path, f"is {len(raw)} bytes long, too short for an IDX header")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise _corrupt(path, f"has magic number {found}, expected {magic}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(path, "is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise _corrupt(
            path, f"holds {len(raw) - header} data bytes, its header {list(shape)} says {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _corrupt(path: Path, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"Fashion-MNIST file {path} {what}: it is corrupt or truncated; reinstall it "
        "(apt-get install --reinstall dataset-fashion-mnist) or point "
        "dataset.datamodule.root at an intact copy"
    )


def find_files(root: Path) -> dict[str, Path]:
    """Locate the four IDX files under ``root``: gzipped or not, flat or torchvision's layout.

    Raises:
        DatasetNotFoundError: saying where it looked, what it expected and how to get the files.
    """
    candidates = [root, root / "FashionMNIST" / "raw"]
    for folder in candidates:
        found: dict[str, Path] = {}
        for key, name in FILES.items():
            for path in (folder / f"{name}.gz", folder / name):
                if path.is_file():
                    found[key] = path
                    break
        if len(found) == len(FILES):
            return found
    looked = " and ".join(str(c.absolute()) for c in candidates)
    expected = ", ".join(f"{name}.gz" for name in FILES.values())
    raise DatasetNotFoundError(
        f"Fashion-MNIST not found: looked in {looked} for {expected} (or the same files "
        f"unzipped). Install them with `apt-get install dataset-fashion-mnist` (puts them in "
        f"{DEFAULT_ROOT}) or set dataset.datamodule.root=<folder holding them>."
    )


def load_split(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one images/labels pair as uint8 [N, 1, 28, 28] and int64 [N] tensors, checked."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise _corrupt(images_path, f"holds {images.shape[1:]} images, expected 28x28")
    if len(images) != len(labels):
        raise _corrupt(labels_path, f"has {len(labels)} labels for {len(images)} images")
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise _corrupt(labels_path, f"has label {int(labels.max())}, expected 0..9")
    # frombuffer arrays are read-only; copy once so torch owns writable memory
    return (
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
    )


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST as [1, 28, 28] images in [0, 1].

    The official 60k training images are split at random (seeded) into training and validation
    (``val_fraction=1/12`` gives 55 000 / 5 000); the official 10k test images are the test set.
    Training images are shifted by up to ``crop_padding`` pixels. All images are held in memory
    as uint8 (47 MB) and scaled per item.

    Args:
        root: folder with the four IDX files (``.gz`` or unzipped), or a torchvision root holding
            ``FashionMNIST/raw/``; ``None`` uses the Debian package's folder.
        batch_size: images per training batch.
        eval_batch_size: images per validation/test batch; ``None`` uses ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: seed of the split, of the ``limit_train`` subset and of shuffling.
        val_fraction: fraction of the official training set held out for validation.
        augment: random shifts (zero-pad then crop 28x28) on the training split.
        limit_train: keep only this many training images (seeded subset); ``None`` keeps all.
        crop_padding: largest random shift in pixels.
    """

    name = "fashion_mnist"
    input_size = (1, IMAGE_SIDE, IMAGE_SIDE)
    num_classes = NUM_CLASSES

    def __init__(
        self,
        *,
        root: str | None = DEFAULT_ROOT,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 1 / 12,
        augment: bool = True,
        limit_train: int | None = None,
        crop_padding: int = 2,
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
        self.root = Path(DEFAULT_ROOT if root is None else root).expanduser()
        self.crop_padding = check_int("crop_padding", crop_padding, minimum=0)

    def prepare_data(self) -> None:
        """Fail early, with instructions, when the files are missing."""
        find_files(self.root)

    def _build_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        files = find_files(self.root)
        images, labels = load_split(files["train_images"], files["train_labels"])
        test_images, test_labels = load_split(files["test_images"], files["test_labels"])
        val_idx, train_idx = seeded_split(len(labels), [self.val_fraction], self.seed)
        transform = RandomPadCrop(self.crop_padding) if self.augment else None
        train = TensorImageDataset(
            images[train_idx], labels[train_idx], max_value=255, transform=transform
        )
        val = TensorImageDataset(images[val_idx], labels[val_idx], max_value=255)
        test = TensorImageDataset(test_images, test_labels, max_value=255)
        return train, val, test
