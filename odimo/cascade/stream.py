# SPDX-License-Identifier: Apache-2.0
"""The cascade behind a memory, evaluated on a stream built from the test split.

The stream repeats a share of the split's images, some rotated/flipped; items that miss the
memory run the cascade, so the networks are rebuilt to predict the transformed repeats (the
untransformed ones reuse the cached logits of their original).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from odimo.cascade.memory import (
    cascade_on_stream,
    image_keys,
    make_stream,
    run_memory,
    stream_images,
)
from odimo.cascade.predict import load_classifier, predict_images, split_images
from odimo.cascade.preds import Predictions, PredictionsError
from odimo.cascade.routing import pair_outputs


def stream_logits(
    model: torch.nn.Module, images: torch.Tensor, preds: Predictions, stream, batch_size: int
) -> np.ndarray:
    """Logits of every stream item: the cached ones for plain repeats, fresh ones for turned."""
    logits = preds.logits[stream.source].copy()
    turned = np.flatnonzero(stream.transform != 0)
    if turned.size:
        fresh = predict_images(model, stream_images(images, stream, turned), batch_size)
        logits[turned] = fresh
    return logits


def memory_report(
    infos: tuple[dict[str, Any], dict[str, Any] | None],
    test: tuple[Predictions, Predictions],
    *,
    score: str,
    postcheck: bool,
    threshold: float,
    memory: str,
    cfg: dict[str, Any],
) -> dict[str, Any]:
    """Hit/false-hit rates, accuracy and big-call share of the cascade with `memory` on a
    seeded stream (`cfg`: duplicates, rotations, seed, digits, capacity, batch_size)."""
    little_model, datamodule = load_classifier(infos[0])
    images, labels = split_images(datamodule, "test")
    if not np.array_equal(labels.numpy(), test[0].labels):
        raise PredictionsError(
            "the test split's labels differ from the cached predictions: predict again"
        )
    square = images.shape[-1] == images.shape[-2]
    stream = make_stream(len(labels), cfg["duplicates"], cfg["rotations"], cfg["seed"], square)
    keys = image_keys(stream_images(images, stream, np.arange(len(stream))), memory, cfg["digits"])
    trace = run_memory(keys, cfg.get("capacity"))
    batch = int(cfg["batch_size"])
    logits_little = stream_logits(little_model, images, test[0], stream, batch)
    if infos[1] is None:
        logits_big = logits_little
    else:
        big_model, _ = load_classifier(infos[1])
        logits_big = stream_logits(big_model, images, test[1], stream, batch)
    outputs = pair_outputs(
        logits_little, logits_big, test[0].labels[stream.source], score, postcheck
    )
    return cascade_on_stream(trace, stream, outputs, threshold)
