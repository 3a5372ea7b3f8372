# SPDX-License-Identifier: Apache-2.0
"""Confidence scores of a classifier's logits, all on one scale: in [0, 1], higher = surer.

A cascade sends an input to the big network iff the little network's confidence < threshold.
`entropy` is normalised by ln C for every class count C, so one threshold means the same thing
for 10 or 1000 classes. The `oracle` router reads the labels: it is an upper bound for
evaluation, never a deployable score.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from odimo.errors import ConfigError

#: Score functions usable as routers at deployment (no label needed).
DEPLOYABLE = ("maxp", "margin", "entropy")
#: All score names, the oracle last.
SCORES = (*DEPLOYABLE, "oracle")
#: Names the reference tool used, accepted as aliases.
ALIASES = {"difference": "margin"}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def maxp(probs: np.ndarray) -> np.ndarray:
    """The largest class probability (1/C .. 1, shown on [0, 1])."""
    return probs.max(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability (0 = a tie between the best two, 1 = one-hot)."""
    top2 = np.partition(probs, probs.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def entropy(probs: np.ndarray) -> np.ndarray:
    """1 − H(p)/ln C (0 = uniform, 1 = one-hot); 0·ln 0 counts as 0."""
    num_classes = probs.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(probs > 0, probs * np.log(probs), 0.0)
    return np.clip(1.0 + plogp.sum(axis=1) / np.log(num_classes), 0.0, 1.0)


_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "maxp": maxp,
    "margin": margin,
    "entropy": entropy,
}


def canonical(name: str) -> str:
    """The score's canonical name (`difference` -> `margin`); ConfigError for an unknown one."""
    name = ALIASES.get(str(name), str(name))
    if name not in SCORES:
        raise ConfigError(f"unknown score {name!r} (choose from: {', '.join(SCORES)})")
    return name


def confidence(logits: np.ndarray, score: str) -> np.ndarray:
    """Confidence in [0, 1] of each row of `logits` [N, C] under a deployable score."""
    score = canonical(score)
    if score == "oracle":
        raise ConfigError("the oracle needs labels: use oracle_confidence()")
    if np.asarray(logits).shape[1] < 2:
        raise ConfigError("confidence scores need at least 2 classes")
    return _FUNCTIONS[score](softmax(logits))


def oracle_confidence(correct_little: np.ndarray, correct_big: np.ndarray) -> np.ndarray:
    """The oracle router as a confidence: 0 where only the big network is right, else 1.

    With any threshold in (0, 1] it sends exactly the inputs the big network fixes: the best
    accuracy a two-network cascade can reach, with the fewest big calls.
    """
    return np.where(~correct_little & correct_big, 0.0, 1.0)
