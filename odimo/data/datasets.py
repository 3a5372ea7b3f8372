# SPDX-License-Identifier: Apache-2.0
"""Map-style datasets behind the datamodules: in-memory tensors and lists of image files.

Both return ``(image, label)`` with ``image`` float32 in [0, 1] of shape [C, H, W] and ``label``
an int64 scalar; no mean/std normalisation (the network's first quantizer expects [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from odimo.data.transforms import Transform
from odimo.errors import DatasetNotFoundError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm"})


class TensorImageDataset(Dataset[tuple[Tensor, Tensor]]):
    """Images held in memory as integer levels, scaled to [0, 1] one item at a time.

    Keeping uint8 levels (rather than float32) quarters the memory; batches are converted and
    augmented in one go (``__getitems__``), so an epoch of 60k images takes well under a second.

    Args:
        images: [N, C, H, W] tensor of levels in ``[0, max_value]``.
        labels: [N] integer class indices.
        max_value: level that maps to 1.0 (255 for 8-bit images, 16 for sklearn digits).
        transform: augmentation applied to each float image (train split only).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        max_value: float,
        transform: Transform | None = None,
    ) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.max_value = float(max_value)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index].to(torch.float32) / self.max_value
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[Tensor, Tensor]]:
        """A whole batch at once (the DataLoader calls this): one conversion and one vectorised
        augmentation instead of one per image."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        images = self.images[index].to(torch.float32) / self.max_value
        if self.transform is not None:
            images = self.transform(images)
        return list(zip(images.unbind(0), self.labels[index].unbind(0), strict=True))


def load_rgb(path: str | Path, size: tuple[int, int]) -> Tensor:
    """Read an image file as RGB float32 [3, H, W] in [0, 1], resized to ``size`` = (H, W).

    Grayscale and palette images are converted to RGB; a file PIL cannot read raises
    ``DatasetNotFoundError`` naming it.
    """
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise DatasetNotFoundError(f"cannot read image {path}: {err}") from err
    height, width = size
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
    array = np.array(rgb, dtype=np.uint8)  # [H, W, 3], writable copy
    return torch.from_numpy(array).permute(2, 0, 1).to(torch.float32).div_(255.0)


class ImageFileDataset(Dataset[tuple[Tensor, Tensor]]):
    """Images decoded from files on access (too many to hold in memory).

    Args:
        files: image paths.
        labels: class index of each file.
        size: (H, W) every image is resized to.
        transform: augmentation applied to each float image (train split only).
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        labels: Sequence[int] | Tensor,
        *,
        size: tuple[int, int],
        transform: Transform | None = None,
    ) -> None:
        if len(files) != len(labels):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        self.files = [str(f) for f in files]
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.size = size
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = load_rgb(self.files[index], self.size)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (so splits are reproducible)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
