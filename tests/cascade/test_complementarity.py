# SPDX-License-Identifier: Apache-2.0
"""Complementarity matrices against set arithmetic, and the pair ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from odimo.cascade.complementarity import Candidate, complementarity_matrices, rank_pairs
from odimo.cascade.expected_cost import NetCost
from odimo.cascade.preds import Predictions


def test_matrices_equal_set_arithmetic() -> None:
    rng = np.random.default_rng(0)
    correct = rng.random((4, 300)) < np.array([[0.6], [0.7], [0.8], [0.9]])
    m = complementarity_matrices(correct)
    sets = [set(np.flatnonzero(row)) for row in correct]
    for i in range(4):
        for j in range(4):
            a, b = sets[i], sets[j]
            assert m["exactly_one"][i, j] == pytest.approx(len(a ^ b) / 300)
            assert m["symmetric"][i, j] == pytest.approx(2 * min(len(a - b), len(b - a)) / 300)
    assert np.allclose(np.diag(m["exactly_one"]), 0)


def _candidate(name: str, right: np.ndarray, energy: float, margin: float) -> Candidate:
    labels = np.zeros(len(right), dtype=np.int64)
    logits = np.zeros((len(right), 2))
    logits[:, 0] = np.where(right, margin, -margin)  # sure of its answer by `margin`
    return Candidate(name, Predictions(logits, labels, "val"), NetCost(energy / 20, energy))


def test_ranking_keeps_cheap_to_expensive_pairs_and_orders_by_saving() -> None:
    n = 1000
    rng = np.random.default_rng(1)
    big_right = rng.random(n) < 0.9
    # `sure`: right where big is right, sure when right, unsure when wrong -> routable
    sure_right = big_right & (rng.random(n) < 0.9)
    logits = np.where(sure_right, 3.0, -0.05)
    sure = Candidate(
        "sure",
        Predictions(np.stack([logits, -logits], 1), np.zeros(n, np.int64), "val"),
        NetCost(0.1, 5.0),
    )
    blind = _candidate("blind", rng.random(n) < 0.5, 4.0, margin=2.0)  # wrong AND sure
    big = _candidate("big", big_right, 20.0, margin=2.0)
    pool = [sure, blind, big]
    m = complementarity_matrices(np.stack([c.preds.correct for c in pool]))
    rows = rank_pairs(pool, m, epsilon=0.003, cost_metric="energy_uj")
    pairs = [(r["little"], r["big"]) for r in rows]
    assert set(pairs) == {("sure", "big"), ("blind", "big"), ("blind", "sure")}
    assert pairs[0] == ("sure", "big")
    top = rows[0]
    # sending exactly the unsure inputs keeps big's accuracy: saving = 1 - (5 + p·20)/20
    assert top["acc_cascade"] >= top["acc_big"] - 0.003
    assert top["saving"] == pytest.approx(1 - (5 + top["p_big"] * 20) / 20)
    assert top["p_big"] == pytest.approx((~sure_right).mean(), abs=1e-12)
    assert rows[0]["rank"] == 1 and [r["rank"] for r in rows] == [1, 2, 3]
    blind_big = next(r for r in rows if r["little"] == "blind" and r["big"] == "big")
    assert math.isinf(blind_big["saving"]) or blind_big["saving"] < top["saving"]
