# SPDX-License-Identifier: Apache-2.0
"""Routing, post-check and the vectorised threshold sweep against a naive loop."""

from __future__ import annotations

import numpy as np
import pytest

from odimo.cascade.routing import (
    PairOutputs,
    at_threshold,
    pair_outputs,
    sweep,
    sweep_naive,
    threshold_grid,
)
from odimo.cascade.scores import confidence


def _random_pair(n: int = 3000, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    little = rng.normal(size=(n, classes))
    big = rng.normal(size=(n, classes))
    little[np.arange(n), labels] += rng.uniform(0, 3, n)  # right more often than chance
    big[np.arange(n), labels] += rng.uniform(0, 5, n)
    return little, big, labels


@pytest.mark.parametrize("score", ["maxp", "margin", "entropy", "oracle"])
@pytest.mark.parametrize("postcheck", [False, True])
def test_vectorised_sweep_equals_naive_loop(score: str, postcheck: bool) -> None:
    little, big, labels = _random_pair()
    outputs = pair_outputs(little, big, labels, score, postcheck)
    # the grid plus every confidence value itself (ties with `<` at the boundary)
    thresholds = np.concatenate([threshold_grid(2001), outputs.conf[:200]])
    acc, p_big = sweep(outputs, thresholds)
    acc_ref, p_big_ref = sweep_naive(outputs, thresholds)
    np.testing.assert_array_equal(p_big, p_big_ref)
    np.testing.assert_allclose(acc, acc_ref, rtol=0, atol=1e-12)


def test_sweep_with_many_tied_confidences() -> None:
    rng = np.random.default_rng(1)
    n = 500
    outputs = PairOutputs(
        conf=rng.integers(0, 5, n) / 4.0,  # only 5 distinct values: heavy ties
        pred_little=rng.integers(0, 2, n),
        pred_sent=rng.integers(0, 2, n),
        labels=rng.integers(0, 2, n),
    )
    thresholds = np.array([0.0, 0.25, 0.2500001, 0.5, 0.75, 1.0])
    acc, p_big = sweep(outputs, thresholds)
    acc_ref, p_big_ref = sweep_naive(outputs, thresholds)
    np.testing.assert_allclose(acc, acc_ref, atol=1e-12)
    np.testing.assert_array_equal(p_big, p_big_ref)


def test_ends_of_the_threshold_range() -> None:
    little, big, labels = _random_pair(seed=2)
    outputs = pair_outputs(little, big, labels, "maxp", postcheck=False)
    acc0, p0 = at_threshold(outputs, 0.0)
    assert (acc0, p0) == ((little.argmax(1) == labels).mean(), 0.0)
    # maxp < 1 for every input here, so threshold 1 sends them all to big
    acc1, p1 = at_threshold(outputs, 1.0)
    assert (acc1, p1) == ((big.argmax(1) == labels).mean(), 1.0)


def test_postcheck_keeps_the_surer_answer() -> None:
    # sample 0: little surer -> keep little's class 0; sample 1: big surer -> big's class 2;
    # sample 2: equally sure -> big wins the tie (class 1)
    little = np.log(np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.6, 0.2, 0.2]]))
    big = np.log(np.array([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2]]))
    labels = np.array([0, 2, 0])
    with_check = pair_outputs(little, big, labels, "maxp", postcheck=True)
    np.testing.assert_array_equal(with_check.pred_sent, [0, 2, 1])
    without = pair_outputs(little, big, labels, "maxp", postcheck=False)
    np.testing.assert_array_equal(without.pred_sent, [1, 2, 1])
    # at threshold 1 every input goes to big: 2 of 3 right with the post-check, 1 without
    assert at_threshold(with_check, 1.0)[0] == pytest.approx(2 / 3)
    assert at_threshold(without, 1.0)[0] == pytest.approx(1 / 3)


def test_oracle_reaches_the_union_of_both_networks() -> None:
    little, big, labels = _random_pair(seed=3)
    outputs = pair_outputs(little, big, labels, "oracle", postcheck=False)
    right_l, right_b = little.argmax(1) == labels, big.argmax(1) == labels
    acc, p_big = at_threshold(outputs, 0.5)
    assert acc == pytest.approx((right_l | right_b).mean())
    assert p_big == pytest.approx((~right_l & right_b).mean())


def test_predictions_follow_the_route() -> None:
    little, big, labels = _random_pair(n=200, seed=4)
    outputs = pair_outputs(little, big, labels, "margin", postcheck=False)
    pred, to_big = outputs.predictions(0.4)
    np.testing.assert_array_equal(to_big, confidence(little, "margin") < 0.4)
    np.testing.assert_array_equal(pred, np.where(to_big, big.argmax(1), little.argmax(1)))
