# SPDX-License-Identifier: Apache-2.0
"""Tests of the Fashion-MNIST datamodule on tiny IDX files written in the real format."""

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from odimo.data import FashionMNISTDataModule
from odimo.data.fashion_mnist import DEFAULT_ROOT, FILES, read_idx
from odimo.errors import DatasetNotFoundError, OdimoError

N_TRAIN, N_TEST = 50, 20


def level(label: int) -> int:
    """The constant grey level the fake data uses for a class."""
    return 10 + 25 * label


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 array in IDX format (magic 0x08 type byte, big-endian sizes)."""
    magic = 0x0800 | array.ndim
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def fake_arrays(n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    labels = ((np.arange(n) + offset) % 10).astype(np.uint8)
    images = np.empty((n, 28, 28), dtype=np.uint8)
    images[:] = np.array([level(int(k)) for k in labels], dtype=np.uint8)[:, None, None]
    return images, labels


def write_fake(folder: Path, gz: bool = True) -> Path:
    """Write the four files (50 train, 20 test images) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = fake_arrays(N_TRAIN, 0)
    test_images, test_labels = fake_arrays(N_TEST, 3)
    arrays = {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }
    for key, name in FILES.items():
        data = idx_bytes(arrays[key])
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def check_labels(dataset) -> None:
    for i in range(len(dataset)):
        image, label = dataset[i]
        assert torch.all((image * 255).round() == level(int(label)))


@pytest.mark.parametrize("layout", ["gz", "raw", "torchvision"])
def test_loads_every_layout(tmp_path: Path, layout: str) -> None:
    if layout == "torchvision":
        write_fake(tmp_path / "FashionMNIST" / "raw")
    else:
        write_fake(tmp_path, gz=layout == "gz")
    dm = FashionMNISTDataModule(root=str(tmp_path), val_fraction=0.2, batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    assert [len(dm.train_set), len(dm.val_set), len(dm.test_set)] == [40, 10, N_TEST]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() >= 0.0 and x.max() <= 1.0
    check_labels(dm.val_set)
    check_labels(dm.test_set)


def test_split_is_seeded_and_train_only_augmented(tmp_path: Path) -> None:
    write_fake(tmp_path)

    def val_labels(seed: int) -> list[int]:
        dm = FashionMNISTDataModule(root=str(tmp_path), val_fraction=0.2, seed=seed)
        dm.setup()
        return [int(dm.val_set[i][1]) for i in range(len(dm.val_set))]

    assert val_labels(0) == val_labels(0)
    assert val_labels(0) != val_labels(1)
    dm = FashionMNISTDataModule(root=str(tmp_path), val_fraction=0.2, eval_batch_size=4)
    dm.setup()
    assert torch.equal(
        torch.cat([x for x, _ in dm.val_dataloader()]),
        torch.cat([x for x, _ in dm.val_dataloader()]),
    )
    torch.manual_seed(0)
    # constant images: a shift shows as zero padding entering from a border
    padded = sum(bool((dm.train_set[i][0] == 0).any()) for i in range(len(dm.train_set)))
    assert padded > 0


def test_missing_files_say_where_and_how(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    dm = FashionMNISTDataModule(root=str(missing))
    with pytest.raises(DatasetNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert str(missing) in message
    assert "dataset-fashion-mnist" in message
    assert "train-images-idx3-ubyte.gz" in message
    assert "dataset.datamodule.root" in message
    with pytest.raises(DatasetNotFoundError):
        dm.setup("fit")


def test_incomplete_folder_is_missing(tmp_path: Path) -> None:
    write_fake(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte"):
        FashionMNISTDataModule(root=str(tmp_path)).setup()


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    write_fake(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(OdimoError, match="train-images-idx3-ubyte.gz"):
        FashionMNISTDataModule(root=str(tmp_path)).setup()


def test_truncated_data_names_the_file(tmp_path: Path) -> None:
    write_fake(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(OdimoError, match="t10k-images-idx3-ubyte.*truncated"):
        FashionMNISTDataModule(root=str(tmp_path)).setup()


def test_wrong_magic_and_mismatched_counts(tmp_path: Path) -> None:
    write_fake(tmp_path, gz=False)
    with pytest.raises(OdimoError, match="magic number 2049, expected 2051"):
        read_idx(tmp_path / "train-labels-idx1-ubyte", 2051)
    shutil.copy(tmp_path / "t10k-labels-idx1-ubyte", tmp_path / "train-labels-idx1-ubyte")
    with pytest.raises(OdimoError, match="20 labels for 50 images"):
        FashionMNISTDataModule(root=str(tmp_path)).setup()


def test_read_idx_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(path, 2051), array)


REAL_DATA = os.environ.get("ODIMO_REAL_DATA", "") == "1"


@pytest.mark.skipif(
    not REAL_DATA,
    reason="opt-in: ODIMO_REAL_DATA=1 reads the real Fashion-MNIST files "
    "(apt-get install dataset-fashion-mnist); CI (.ci/run) runs it",
)
def test_real_files() -> None:
    """The real files of the distribution package (CI installs it and sets ODIMO_REAL_DATA=1).

    Opted in, missing files fail (never skip): CI must really read them.
    """
    assert (Path(DEFAULT_ROOT) / "train-images-idx3-ubyte.gz").is_file(), (
        f"real Fashion-MNIST missing under {DEFAULT_ROOT}: apt-get install dataset-fashion-mnist"
    )
    dm = FashionMNISTDataModule(seed=0)
    dm.setup("fit")
    assert [len(dm.train_set), len(dm.val_set), len(dm.test_set)] == [55000, 5000, 10000]
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (128, 1, 28, 28) and x.min() >= 0.0 and x.max() <= 1.0
    assert torch.bincount(dm.test_set.labels, minlength=10).tolist() == [1000] * 10
