# SPDX-License-Identifier: Apache-2.0
"""CIFAR-10 (32x32 RGB, 10 classes, 50k train + 10k test) from its official python batches."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from odimo.data.base import ImageDataModule, check_int, seeded_split
from odimo.data.datasets import TensorImageDataset
from odimo.data.transforms import Compose, RandomHorizontalFlip, RandomPadCrop
from odimo.errors import DatasetNotFoundError

BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
NUM_CLASSES = 10


def find_batches_dir(root: Path) -> Path | None:
    """``root/cifar-10-batches-py`` (torchvision's layout) or ``root`` itself if it holds the
    batches; ``None`` when neither has them all."""
    for folder in (root / BATCHES_DIR, root):
        if all((folder / name).is_file() for name in (*TRAIN_BATCHES, TEST_BATCH)):
            return folder
    return None


#: The only globals a CIFAR batch pickle may name: numpy's array reconstruction (numpy 1 and 2
#: module paths, pickle protocols 2-5) and the codec python 3 uses for bytes in protocol 2.
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch (a dict of numpy arrays, lists, bytes) and nothing else.

    A pickle can name any importable callable (`os.system`, ...) and have it run while loading;
    this one refuses every global outside `ALLOWED_GLOBALS` before it is looked up, so a
    malicious file fails without running anything.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which a CIFAR-10 batch never holds (refused unread)"
            )
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one batch file: uint8 images [N, 3, 32, 32] and int64 labels [N].

    The files are python pickles of ``{"data": uint8 [N, 3072], "labels": [N]}`` (keys may be
    bytes in the original python-2 pickles), read with `BatchUnpickler`: only numpy arrays,
    lists, bytes and plain values load, so a crafted file cannot run code.

    Raises:
        DatasetNotFoundError: unreadable or malformed file (the message names it).
    """
    try:
        with path.open("rb") as f:
            entry: Any = BatchUnpickler(f, encoding="latin1").load()
        if not isinstance(entry, dict):
            raise ValueError(f"a {type(entry).__name__}, not a dict")
        entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry["labels"], dtype=np.int64)
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        AttributeError,
        KeyError,
        ValueError,
        TypeError,
    ) as err:
        raise _corrupt(path, f"cannot be read ({type(err).__name__}: {err})") from err
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise _corrupt(path, f"holds data {data.shape} and {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise _corrupt(path, f"has labels outside 0..{NUM_CLASSES - 1}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels)


def _corrupt(path: Path, what: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"CIFAR-10 file {path} {what}: it is corrupt or not a CIFAR-10 batch; delete "
        f"{path.parent} and download again with dataset.datamodule.download=true"
    )


def read_split(folder: Path, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the images and labels of several batch files."""
    parts = [read_batch(folder / name) for name in names]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 as [3, 32, 32] images in [0, 1], no mean/std normalisation.

    The 50k official training images are split at random (seeded) into 45k training and 5k
    validation images (``val_fraction=0.1``); the official 10k test images are the test set.
    Training images get a random crop (zero padding ``crop_padding``) and a horizontal flip.
    The batches are read directly (no checksum pass); ``download=true`` fetches them with
    torchvision's downloader, which does verify them.

    Args:
        root: folder holding ``cifar-10-batches-py/`` (or the batches themselves).
        batch_size: images per training batch.
        eval_batch_size: images per validation/test batch; ``None`` uses ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: seed of the split, of the ``limit_train`` subset and of shuffling.
        val_fraction: fraction of the official training set held out for validation.
        augment: random crop and horizontal flip on the training split.
        download: download into ``root`` when the batches are missing (needs the network).
        limit_train: keep only this many training images (seeded subset); ``None`` keeps all.
        crop_padding: zero padding in pixels of the random 32x32 crop.
    """

    name = "cifar10"
    input_size = (3, 32, 32)
    num_classes = NUM_CLASSES

    def __init__(
        self,
        *,
        root: str | None = "data/cifar10",
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        augment: bool = True,
        download: bool = False,
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
        self.root = Path("data/cifar10" if root is None else root).expanduser()
        self.download = bool(download)
        self.crop_padding = check_int("crop_padding", crop_padding, minimum=0)

    def prepare_data(self) -> None:
        """Download the batches when asked and missing; otherwise check they are there."""
        self._locate()

    def _locate(self) -> Path:
        folder = find_batches_dir(self.root)
        if folder is not None:
            return folder
        if not self.download:
            expected = ", ".join((*TRAIN_BATCHES, TEST_BATCH))
            raise DatasetNotFoundError(
                f"CIFAR-10 not found: looked in {(self.root / BATCHES_DIR).absolute()} for "
                f"{expected}. Pass dataset.datamodule.download=true on a machine with network "
                f"access (it downloads into {self.root}), or set dataset.datamodule.root=<folder "
                f"holding {BATCHES_DIR}/>."
            )
        from torchvision.datasets import CIFAR10  # local: only needed to download

        for train in (True, False):
            CIFAR10(str(self.root), train=train, download=True)
        folder = find_batches_dir(self.root)
        if folder is None:
            raise DatasetNotFoundError(
                f"CIFAR-10 download finished but {self.root / BATCHES_DIR} is incomplete"
            )
        return folder

    def _build_splits(self) -> tuple[Dataset, Dataset, Dataset]:
        folder = self._locate()
        images, labels = read_split(folder, TRAIN_BATCHES)
        test_images, test_labels = read_split(folder, (TEST_BATCH,))
        val_idx, train_idx = seeded_split(len(labels), [self.val_fraction], self.seed)
        transform = (
            Compose([RandomPadCrop(self.crop_padding), RandomHorizontalFlip()])
            if self.augment
            else None
        )
        train = TensorImageDataset(
            images[train_idx], labels[train_idx], max_value=255, transform=transform
        )
        val = TensorImageDataset(images[val_idx], labels[val_idx], max_value=255)
        test = TensorImageDataset(test_images, test_labels, max_value=255)
        return train, val, test
