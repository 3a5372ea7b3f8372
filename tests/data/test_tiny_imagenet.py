# SPDX-License-Identifier: Apache-2.0
"""Tests of the Tiny ImageNet datamodule on a few JPEGs in the real ``tiny-imagenet-200`` layout."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from odimo.data import TinyImageNetDataModule
from odimo.errors import DatasetNotFoundError

# wnids.txt lists them unsorted; labels follow sorted order: n01 -> 0, n02 -> 1, n03 -> 2
WNIDS = ["n03", "n01", "n02"]
COLORS = {"n01": (220, 30, 30), "n02": (30, 220, 30), "n03": (128, 128, 128)}
PER_CLASS, N_VAL = 10, 6


def write_image(path: Path, wnid: str, size: int = 64) -> None:
    """A constant-colour JPEG; class n03 is stored as grayscale, like some real images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if wnid == "n03":
        Image.new("L", (size, size), COLORS[wnid][0]).save(path)
    else:
        Image.new("RGB", (size, size), COLORS[wnid]).save(path)


def write_fake(root: Path) -> Path:
    (root / "train").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for wnid in WNIDS:
        for i in range(PER_CLASS):
            write_image(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", wnid)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for i in range(N_VAL):
        wnid = WNIDS[i % 3]
        # one image of another size: it is resized to 64x64
        write_image(root / "val" / "images" / f"val_{i}.JPEG", wnid, size=56 if i == 0 else 64)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def label_of(image: torch.Tensor) -> int:
    """Nearest class colour of the image's centre (JPEG is lossy: allow small errors)."""
    rgb = image[:, 32, 32] * 255
    wnid = min(COLORS, key=lambda w: float((rgb - torch.tensor(COLORS[w])).abs().max()))
    assert float((rgb - torch.tensor(COLORS[wnid])).abs().max()) < 8
    return sorted(WNIDS).index(wnid)


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    return write_fake(tmp_path / "tiny-imagenet-200")


def test_splits_shapes_and_labels(fake_root: Path) -> None:
    dm = TinyImageNetDataModule(root=str(fake_root), batch_size=4, eval_batch_size=3)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_classes == 200 and dm.input_size == (3, 64, 64)
    assert dm.classes == ["n01", "n02", "n03"]
    assert [len(dm.train_set), len(dm.val_set), len(dm.test_set)] == [27, 3, N_VAL]
    train = dm.train_dataloader()
    assert train.batch_size == 4
    x, y = next(iter(train))
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert [label_of(img) for img in x] == y.tolist()
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        assert loader.batch_size == 3
        for x, y in loader:
            assert x.shape[1:] == (3, 64, 64)
            assert [label_of(img) for img in x] == y.tolist()
            assert x.min() > 0  # not augmented: no zero padding
    assert sorted(int(dm.test_set[i][1]) for i in range(N_VAL)) == [0, 0, 1, 1, 2, 2]


def test_train_only_augmented(fake_root: Path) -> None:
    dm = TinyImageNetDataModule(root=str(fake_root))
    dm.setup()
    torch.manual_seed(0)
    padded = sum(bool((dm.train_set[i][0] == 0).any()) for i in range(len(dm.train_set)))
    assert padded > 5
    first = torch.stack([dm.val_set[i][0] for i in range(len(dm.val_set))])
    second = torch.stack([dm.val_set[i][0] for i in range(len(dm.val_set))])
    assert torch.equal(first, second)


def test_missing_folder(tmp_path: Path) -> None:
    dm = TinyImageNetDataModule(root=str(tmp_path / "nope"))
    with pytest.raises(DatasetNotFoundError) as err:
        dm.prepare_data()
    assert str(tmp_path / "nope") in str(err.value)
    assert "dataset.datamodule.root" in str(err.value)


def test_missing_class_folder_and_annotations(fake_root: Path) -> None:
    (fake_root / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="val_annotations.txt"):
        TinyImageNetDataModule(root=str(fake_root)).setup()
    for path in (fake_root / "train" / "n02" / "images").iterdir():
        path.unlink()
    with pytest.raises(DatasetNotFoundError, match="n02"):
        TinyImageNetDataModule(root=str(fake_root)).setup()


def test_unknown_wnid_in_annotations(fake_root: Path) -> None:
    path = fake_root / "val" / "val_annotations.txt"
    path.write_text(path.read_text() + "val_9.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(DatasetNotFoundError, match="n99"):
        TinyImageNetDataModule(root=str(fake_root)).setup()


def test_more_classes_than_the_head_refused(tmp_path: Path) -> None:
    tmp_path.joinpath("wnids.txt").write_text("\n".join(f"n{i:05d}" for i in range(201)))
    with pytest.raises(DatasetNotFoundError, match="201 classes"):
        TinyImageNetDataModule(root=str(tmp_path)).setup()


def test_unreadable_image_names_the_file(fake_root: Path) -> None:
    bad = fake_root / "val" / "images" / "val_1.JPEG"
    bad.write_bytes(b"not a jpeg")
    dm = TinyImageNetDataModule(root=str(fake_root))
    dm.setup()
    with pytest.raises(DatasetNotFoundError, match="val_1.JPEG"):
        [dm.test_set[i] for i in range(len(dm.test_set))]
