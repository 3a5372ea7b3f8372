# SPDX-License-Identifier: Apache-2.0
"""Tests of the CIFAR-10 datamodule on a tiny fake CIFAR-10 in the official on-disk format."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from odimo.data import CIFAR10DataModule
from odimo.errors import DatasetNotFoundError

# one distinct RGB colour per class
COLORS = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255],
     [0, 255, 255], [128, 0, 0], [0, 128, 0], [0, 0, 128], [128, 128, 128]],
    dtype=np.uint8,
)  # fmt: skip
PER_BATCH, N_TEST = 12, 20


def batch_dict(labels: list[int], byte_keys: bool) -> dict:
    """A batch in the official layout: rows of 1024 R, then 1024 G, then 1024 B values."""
    data = np.repeat(COLORS[labels], 1024, axis=1)  # [N, 3072], channel-major
    entry = {"data": data, "labels": labels, "batch_label": "fake"}
    return {k.encode(): v for k, v in entry.items()} if byte_keys else entry


def write_fake(root: Path) -> Path:
    """Five training batches of 12 images and a test batch of 20, plus batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(1, 6):
        labels = [(b + i) % 10 for i in range(PER_BATCH)]
        # the original files are python-2 pickles whose keys load as bytes: mimic one
        with (folder / f"data_batch_{b}").open("wb") as f:
            pickle.dump(batch_dict(labels, byte_keys=b == 2), f)
    with (folder / "test_batch").open("wb") as f:
        pickle.dump(batch_dict([i % 10 for i in range(N_TEST)], byte_keys=False), f)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)]}, f)
    return root


def label_of(image: torch.Tensor) -> int:
    """The class whose colour the image's centre pixel has."""
    rgb = (image[:, 16, 16] * 255).round().to(torch.uint8).numpy()
    (match,) = np.flatnonzero((rgb == COLORS).all(axis=1))
    return int(match)


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    return write_fake(tmp_path / "cifar10")


def test_splits_shapes_and_labels(fake_root: Path) -> None:
    dm = CIFAR10DataModule(root=str(fake_root), batch_size=8, eval_batch_size=5, seed=0)
    dm.prepare_data()
    dm.setup("fit")
    assert [len(dm.train_set), len(dm.val_set), len(dm.test_set)] == [54, 6, N_TEST]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert [label_of(img) for img in x] == y.tolist()  # crop <= 4 px keeps the centre colour
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        assert loader.batch_size == 5
        for x, y in loader:
            assert [label_of(img) for img in x] == y.tolist()
            # not augmented: every pixel has the class colour (no padding came in)
            expected = torch.from_numpy(COLORS[y.numpy()]).float()[:, :, None, None] / 255
            assert torch.equal(x, expected.expand_as(x))
    assert sorted(int(dm.test_set[i][1]) for i in range(N_TEST)) == sorted(
        i % 10 for i in range(N_TEST)
    )


def test_train_only_augmented(fake_root: Path) -> None:
    dm = CIFAR10DataModule(root=str(fake_root))
    dm.setup()
    torch.manual_seed(0)
    x = torch.stack([dm.train_set[i][0] for i in range(len(dm.train_set))])
    assert (x == 0).flatten(1).any(1).sum() > 10  # zero padding shifted in
    plain = CIFAR10DataModule(root=str(fake_root), augment=False)
    plain.setup()
    x = torch.stack([plain.train_set[i][0] for i in range(len(plain.train_set))])
    assert not (x.sum(1) == 0).any()


def test_split_is_seeded(fake_root: Path) -> None:
    def val_labels(seed: int) -> list[int]:
        dm = CIFAR10DataModule(root=str(fake_root), seed=seed)
        dm.setup()
        return [int(dm.val_set[i][1]) for i in range(len(dm.val_set))]

    assert val_labels(3) == val_labels(3)
    assert val_labels(3) != val_labels(4)


def test_batches_directly_in_root(fake_root: Path) -> None:
    dm = CIFAR10DataModule(root=str(fake_root / "cifar-10-batches-py"))
    dm.setup()
    assert len(dm.test_set) == N_TEST


def test_missing_without_download(tmp_path: Path) -> None:
    dm = CIFAR10DataModule(root=str(tmp_path / "absent"))
    with pytest.raises(DatasetNotFoundError) as err:
        dm.prepare_data()
    assert str(tmp_path / "absent") in str(err.value)
    assert "dataset.datamodule.download=true" in str(err.value)
    with pytest.raises(DatasetNotFoundError):
        dm.setup("fit")


def test_download_delegates_to_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class FakeCIFAR10:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            if not (Path(root) / "cifar-10-batches-py").exists():
                write_fake(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    root = tmp_path / "dl"
    dm = CIFAR10DataModule(root=str(root), download=True)
    dm.prepare_data()
    assert calls == [(str(root), True, True), (str(root), False, True)]
    dm.setup()
    assert len(dm.test_set) == N_TEST
    assert len(calls) == 2  # present now: no second download


def test_corrupt_batch_names_the_file(fake_root: Path) -> None:
    path = fake_root / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        CIFAR10DataModule(root=str(fake_root)).setup()


class _Payload:
    """Unpickling this runs a shell command (creates `marker`): what a malicious file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_malicious_batch_is_refused_and_nothing_runs(fake_root: Path, tmp_path: Path) -> None:
    """A batch whose pickle calls os.system while loading: one line naming the file and the
    refused global, and the command never ran (its marker file is absent)."""
    marker = tmp_path / "pwned"
    path = fake_root / "cifar-10-batches-py" / "data_batch_4"
    entry = batch_dict([1, 2], byte_keys=False)
    entry["data"] = _Payload(marker)
    path.write_bytes(pickle.dumps(entry))
    with pytest.raises(DatasetNotFoundError) as err:
        CIFAR10DataModule(root=str(fake_root)).setup()
    text = str(err.value)
    assert "data_batch_4" in text and "system" in text and "\n" not in text
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 5])
def test_real_format_batch_loads_with_the_restricted_reader(tmp_path: Path, protocol: int) -> None:
    """A batch in the official format (bytes keys, numpy data, list labels, filenames), pickled
    with protocol 2 as python 2 wrote it and with protocol 5: read back exactly."""
    from odimo.data.cifar10 import read_batch

    labels = [3, 1, 4, 1, 5]
    entry = batch_dict(labels, byte_keys=True)
    entry[b"filenames"] = [f"img{i}.png".encode() for i in range(len(labels))]
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(entry, protocol=protocol))
    images, got = read_batch(path)
    assert got.tolist() == labels
    assert [label_of(img.float() / 255) for img in images] == labels
