# SPDX-License-Identifier: Apache-2.0
"""Small tensor augmentations for the train split, on one image [C, H, W] or a batch [B, C, H, W].

On a batch every image gets its own random draw, in a few vectorised operations (this is what
keeps in-memory datasets fast). They draw from torch's global generator, which Lightning's
``seed_everything`` seeds in the main process and the DataLoader seeds per worker, so a seeded run
augments the same way every time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Transform = Callable[[Tensor], Tensor]


class RandomPadCrop:
    """Random shift by up to ``padding`` pixels: zero-pad every side, crop back to the input size.

    Args:
        padding: pixels added on each side; the shift in each direction is uniform in
            ``[-padding, padding]``.
    """

    def __init__(self, padding: int) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding = padding

    def __call__(self, image: Tensor) -> Tensor:
        pad = self.padding
        if pad == 0:
            return image
        batch = image.unsqueeze(0) if image.ndim == 3 else image
        count, _, height, width = batch.shape
        padded = F.pad(batch, (pad, pad, pad, pad))
        top, left = torch.randint(0, 2 * pad + 1, (2, count, 1))
        rows = (top + torch.arange(height))[:, :, None]  # [B, H, 1]
        cols = (left + torch.arange(width))[:, None, :]  # [B, 1, W]
        # advanced indices around a slice put their broadcast shape first: [B, H, W, C]
        shifted = padded[torch.arange(count)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
        return shifted[0] if image.ndim == 3 else shifted

    def __repr__(self) -> str:
        return f"{type(self).__name__}(padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror the image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, image: Tensor) -> Tensor:
        if image.ndim == 3:
            return image.flip(-1) if float(torch.rand(())) < self.p else image
        flip = (torch.rand(image.shape[0]) < self.p).view(-1, 1, 1, 1)
        return torch.where(flip, image.flip(-1), image)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class Compose:
    """Apply transforms one after the other."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = tuple(transforms)

    def __call__(self, image: Tensor) -> Tensor:
        for transform in self.transforms:
            image = transform(image)
        return image

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"{type(self).__name__}([{inner}])"
