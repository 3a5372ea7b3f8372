# SPDX-License-Identifier: Apache-2.0
"""The validation split cut in two: `select` chooses the threshold, `holdout` reports it.

Choosing the best of thousands of thresholds and reporting the accuracy on the same images
overstates the cascade. One seeded cut estimates the ONE threshold that is deployed (K-fold
cross-fitting would average K thresholds, none of them the deployed one). The cut depends only
on the split's size and the seed, never on labels or predictions: every pair of networks on
the split gets the same halves, and nothing on the held-out half can move the choice.
"""

from __future__ import annotations

import numpy as np

from odimo.cascade.preds import Predictions
from odimo.errors import ConfigError

#: The two parts of the validation split, in the order `split_val` returns them.
PARTS = ("select", "holdout")


def split_val(n: int, holdout_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Sorted indices of `select` and `holdout` of a split of n images: round(fraction·n) seeded
    random images are held out; ConfigError when either part would be empty."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ConfigError(f"holdout_fraction must lie in (0, 1), got {holdout_fraction!r}")
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).permutation(n)[: int(round(holdout_fraction * n))]] = True
    if held.all() or not held.any():
        raise ConfigError(
            f"holdout_fraction={holdout_fraction} leaves a part of the {n} validation images empty"
        )
    return {"select": np.flatnonzero(~held), "holdout": np.flatnonzero(held)}


def subset(preds: Predictions, index: np.ndarray, part: str) -> Predictions:
    """The predictions of the images `index` of a split, named `part`."""
    noisy = None if preds.noisy is None else preds.noisy[:, index]
    return Predictions(preds.logits[index], preds.labels[index], part, preds.source, noisy)
