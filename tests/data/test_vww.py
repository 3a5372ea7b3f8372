# SPDX-License-Identifier: Apache-2.0
"""Tests of the Visual Wake Words datamodule on a few images in the ``vw_coco2014_96`` layout."""

import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from odimo.data import VisualWakeWordsDataModule
from odimo.errors import DatasetNotFoundError

# non_person -> 0, person -> 1
COLORS = {"non_person": (40, 60, 200), "person": (230, 120, 20)}
PER_CLASS = 10


def write_fake(root: Path) -> Path:
    """PNG person images of assorted sizes and JPEG non-person images."""
    for name, color in COLORS.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(PER_CLASS):
            if name == "person":
                Image.new("RGB", (80 + 8 * i, 120), color).save(folder / f"p{i}.png")
            else:
                Image.new("RGB", (96, 96), color).save(folder / f"COCO_{i}.jpg")
        (folder / "notes.txt").write_text("not an image")
    return root


def label_of(image: torch.Tensor) -> int:
    rgb = image[:, 48, 48] * 255
    errors = [float((rgb - torch.tensor(c)).abs().max()) for c in COLORS.values()]
    assert min(errors) < 8
    return errors.index(min(errors))


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    return write_fake(tmp_path / "vw_coco2014_96")


def test_splits_shapes_and_labels(fake_root: Path) -> None:
    dm = VisualWakeWordsDataModule(root=str(fake_root), batch_size=4, eval_batch_size=2)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_classes == 2 and dm.input_size == (3, 96, 96)
    assert [len(dm.train_set), len(dm.val_set), len(dm.test_set)] == [16, 2, 2]
    train = dm.train_dataloader()
    assert train.batch_size == 4
    x, y = next(iter(train))
    assert x.shape == (4, 3, 96, 96) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert [label_of(img) for img in x] == y.tolist()
    labels = []
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        assert loader.batch_size == 2
        for x, y in loader:
            assert x.shape[1:] == (3, 96, 96)
            assert [label_of(img) for img in x] == y.tolist()
            labels += y.tolist()
            # not augmented: constant colour everywhere, no zero padding
            assert (x.flatten(2).amax(2) - x.flatten(2).amin(2)).max() < 8 / 255
    train_labels = [int(dm.train_set[i][1]) for i in range(len(dm.train_set))]
    assert sorted(labels + train_labels) == [0] * PER_CLASS + [1] * PER_CLASS


def test_train_only_augmented_and_seeded(fake_root: Path) -> None:
    dm = VisualWakeWordsDataModule(root=str(fake_root), seed=1)
    dm.setup()
    torch.manual_seed(0)
    padded = sum(bool((dm.train_set[i][0].sum(0) == 0).any()) for i in range(len(dm.train_set)))
    assert padded > 5
    first = torch.stack([dm.test_set[i][0] for i in range(len(dm.test_set))])
    second = torch.stack([dm.test_set[i][0] for i in range(len(dm.test_set))])
    assert torch.equal(first, second)
    again = VisualWakeWordsDataModule(root=str(fake_root), seed=1)
    again.setup()
    assert again.test_set.files == dm.test_set.files
    other = VisualWakeWordsDataModule(root=str(fake_root), seed=2)
    other.setup()
    assert other.val_set.files + other.test_set.files != dm.val_set.files + dm.test_set.files


def test_missing_folder(tmp_path: Path) -> None:
    dm = VisualWakeWordsDataModule(root=str(tmp_path / "absent"))
    with pytest.raises(DatasetNotFoundError) as err:
        dm.prepare_data()
    assert str(tmp_path / "absent") in str(err.value)
    assert "person" in str(err.value)


def test_missing_person_folder(fake_root: Path) -> None:
    for path in (fake_root / "person").iterdir():
        path.unlink()
    (fake_root / "person").rmdir()
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(fake_root / "person"))):
        VisualWakeWordsDataModule(root=str(fake_root)).setup()
