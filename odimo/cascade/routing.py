# SPDX-License-Identifier: Apache-2.0
"""Routing and the threshold sweep of a two-network cascade, from cached per-sample outputs.

The big network runs on an input iff the little network's confidence < threshold. With the
post-check, once big ran the prediction of the more confident of the two is kept (big wins
ties). A sweep over thousands of thresholds costs one sort and two prefix sums: with the
confidences sorted, the inputs sent to big at threshold t are a prefix of that order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from odimo.cascade.scores import confidence, oracle_confidence


@dataclass(frozen=True)
class PairOutputs:
    """What routing needs of a (little, big) pair on one split, per sample.

    Attributes:
        conf: the little network's routing confidence in [0, 1].
        pred_little: the little network's class.
        pred_sent: the cascade's class when the input goes to big (big's, or the post-checked).
        labels: the true classes.
    """

    conf: np.ndarray
    pred_little: np.ndarray
    pred_sent: np.ndarray
    labels: np.ndarray

    @property
    def correct_little(self) -> np.ndarray:
        return self.pred_little == self.labels

    @property
    def correct_sent(self) -> np.ndarray:
        return self.pred_sent == self.labels

    def predictions(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """The cascade's classes at `threshold` and the mask of inputs sent to big."""
        to_big = self.conf < threshold
        return np.where(to_big, self.pred_sent, self.pred_little), to_big

    def __len__(self) -> int:
        return len(self.conf)


def sent_prediction(
    pred_little: np.ndarray,
    pred_big: np.ndarray,
    conf_little: np.ndarray,
    conf_big: np.ndarray,
    postcheck: bool,
) -> np.ndarray:
    """The cascade's prediction on inputs sent to big: big's, or the surer one's (post-check)."""
    if not postcheck:
        return pred_big
    return np.where(conf_little > conf_big, pred_little, pred_big)


def pair_outputs(
    logits_little: np.ndarray,
    logits_big: np.ndarray,
    labels: np.ndarray,
    score: str,
    postcheck: bool,
) -> PairOutputs:
    """Per-sample confidences and correctness of a pair under a score (maxp for the post-check
    of the oracle, which has no confidence of its own)."""
    pred_little, pred_big = logits_little.argmax(axis=1), logits_big.argmax(axis=1)
    correct_little = pred_little == labels
    check = "maxp" if score == "oracle" else score
    conf_little = confidence(logits_little, check)
    conf_big = confidence(logits_big, check) if postcheck else conf_little
    sent = sent_prediction(pred_little, pred_big, conf_little, conf_big, postcheck)
    if score == "oracle":
        conf_little = oracle_confidence(correct_little, sent == labels)
    return PairOutputs(conf_little, pred_little, sent, labels)


def threshold_grid(count: int) -> np.ndarray:
    """`count` evenly spaced thresholds from 0 (big never runs) to 1 (big runs on every input
    the little network is not fully sure of)."""
    if count < 2:
        raise ValueError(f"need at least 2 thresholds, got {count}")
    return np.linspace(0.0, 1.0, count)


def sweep(outputs: PairOutputs, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and share sent to big at every threshold (vectorised: sort + prefix sums).

    Returns:
        (accuracy, p_big), each shaped like `thresholds`.
    """
    n = len(outputs)
    order = np.argsort(outputs.conf, kind="stable")
    conf = outputs.conf[order]
    sent = np.concatenate(([0], np.cumsum(outputs.correct_sent[order], dtype=np.int64)))
    kept = np.concatenate(([0], np.cumsum(outputs.correct_little[order], dtype=np.int64)))
    k = np.searchsorted(conf, np.asarray(thresholds, dtype=np.float64), side="left")
    correct = sent[k] + (kept[-1] - kept[k])
    return correct / n, k / n


def sweep_naive(outputs: PairOutputs, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same as `sweep`, one threshold at a time (the reference the tests compare with)."""
    acc, p_big = [], []
    correct_sent, correct_little = outputs.correct_sent, outputs.correct_little
    for t in np.asarray(thresholds, dtype=np.float64):
        to_big = outputs.conf < t
        acc.append(np.where(to_big, correct_sent, correct_little).mean())
        p_big.append(to_big.mean())
    return np.array(acc), np.array(p_big)


def at_threshold(outputs: PairOutputs, threshold: float) -> tuple[float, float]:
    """(accuracy, p_big) of the cascade at one threshold."""
    acc, p_big = sweep(outputs, np.array([threshold]))
    return float(acc[0]), float(p_big[0])
