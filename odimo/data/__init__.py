# SPDX-License-Identifier: Apache-2.0
"""Image classification datamodules: float32 [C, H, W] inputs in [0, 1], seeded splits,
augmentation of the training split only."""

from odimo.data.base import ImageDataModule, seeded_split
from odimo.data.cifar10 import CIFAR10DataModule
from odimo.data.digits import DigitsDataModule
from odimo.data.fashion_mnist import FashionMNISTDataModule
from odimo.data.tiny_imagenet import TinyImageNetDataModule
from odimo.data.vww import VisualWakeWordsDataModule

DATAMODULES: dict[str, type[ImageDataModule]] = {
    cls.name: cls
    for cls in (
        DigitsDataModule,
        FashionMNISTDataModule,
        CIFAR10DataModule,
        TinyImageNetDataModule,
        VisualWakeWordsDataModule,
    )
}
"""Datamodule class by dataset name (the ``name`` key of ``conf/dataset/*.yaml``)."""

__all__ = [
    "DATAMODULES",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "TinyImageNetDataModule",
    "VisualWakeWordsDataModule",
    "seeded_split",
]
