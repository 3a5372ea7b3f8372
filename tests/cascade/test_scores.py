# SPDX-License-Identifier: Apache-2.0
"""Confidence scores against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from odimo.cascade.scores import canonical, confidence, oracle_confidence, softmax
from odimo.errors import ConfigError


def _logits(probs: list[float]) -> np.ndarray:
    return np.log(np.array([probs]))


def test_scores_of_a_known_distribution() -> None:
    logits = _logits([0.5, 0.3, 0.2])
    h = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2))
    assert confidence(logits, "maxp")[0] == pytest.approx(0.5)
    assert confidence(logits, "margin")[0] == pytest.approx(0.2)
    assert confidence(logits, "entropy")[0] == pytest.approx(1 - h / math.log(3))


@pytest.mark.parametrize("classes", [2, 10, 1000])
def test_uniform_and_one_hot_ends_of_the_scale(classes: int) -> None:
    uniform = np.zeros((1, classes))
    assert confidence(uniform, "maxp")[0] == pytest.approx(1 / classes)
    assert confidence(uniform, "margin")[0] == pytest.approx(0.0)
    assert confidence(uniform, "entropy")[0] == pytest.approx(0.0, abs=1e-12)
    sure = np.full((1, classes), -1e4)
    sure[0, 1] = 1e4
    for score in ("maxp", "margin", "entropy"):
        assert confidence(sure, score)[0] == pytest.approx(1.0)


def test_entropy_is_normalised_by_the_class_count() -> None:
    # the same two-class split padded with near-zero classes keeps ~the same normalised entropy
    # only when normalised by ln C of each: a raw entropy would not lie in [0, 1] for C = 1000
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 1000)) * 3
    conf = confidence(logits, "entropy")
    probs = softmax(logits)
    raw = -(probs * np.log(probs)).sum(axis=1)
    np.testing.assert_allclose(conf, 1 - raw / math.log(1000), atol=1e-12)
    assert conf.min() >= 0 and conf.max() <= 1


def test_softmax_is_stable_for_huge_logits() -> None:
    p = softmax(np.array([[1000.0, 999.0, -1000.0]]))
    np.testing.assert_allclose(p[0, :2], [1 / (1 + math.exp(-1)), 1 / (1 + math.exp(1))])


def test_aliases_and_unknown_names() -> None:
    assert canonical("difference") == "margin"
    with pytest.raises(ConfigError, match="unknown score"):
        canonical("max_prob")
    with pytest.raises(ConfigError, match="labels"):
        confidence(np.zeros((1, 3)), "oracle")


def test_oracle_sends_only_what_big_fixes() -> None:
    little = np.array([True, False, False, True])
    big = np.array([True, True, False, False])
    np.testing.assert_array_equal(oracle_confidence(little, big), [1.0, 0.0, 1.0, 1.0])
