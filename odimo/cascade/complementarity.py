# SPDX-License-Identifier: Apache-2.0
"""How complementary two networks are, and which (little, big) pairs a cascade should try.

For networks a, b with correct-sets A, B on the same N samples:
- `exactly_one[a, b]` = |A Δ B| / N, the share exactly one of them gets right;
- `symmetric[a, b]` = 2·min(|A\\B|, |B\\A|) / N, high only when each fixes the other's errors.
A ranking lists every pair with cost(little) < cost(big) and scores it by what a cascade of the
pair can deliver on the split it is given (validation): the share of big's cost saved by the
cheapest threshold that keeps accuracy ≥ big's − ε (maxp score), with the oracle's accuracy and
both complementarities next to it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from odimo.analysis.sweep import scan_sweep
from odimo.cascade.curve import build_curve, choose_near_big
from odimo.cascade.expected_cost import NetCost
from odimo.cascade.holdout import split_val, subset
from odimo.cascade.predict import predict_finished_run
from odimo.cascade.preds import SPLITS, Predictions, check_pair, info_cost, load_run
from odimo.cascade.routing import pair_outputs, threshold_grid
from odimo.errors import OdimoError

log = logging.getLogger(__name__)
RANK_BY = ("saving", "exactly_one", "symmetric")


def complementarity_matrices(correct: np.ndarray) -> dict[str, np.ndarray]:
    """Both matrices [M, M] from a boolean [M, N] correctness table (one row per network)."""
    c = np.asarray(correct, dtype=np.int64)
    n = c.shape[1]
    both = c @ c.T  # |A ∩ B|
    size = np.diag(both)
    only_a = size[:, None] - both  # |A \ B|
    only_b = only_a.T  # |B \ A|
    return {
        "exactly_one": (only_a + only_b) / n,
        "symmetric": 2 * np.minimum(only_a, only_b) / n,
    }


@dataclass(frozen=True)
class Candidate:
    """One network of a pool: name, predictions on the ranking split and cost per inference."""

    name: str
    preds: Predictions
    cost: NetCost


def pair_report(
    little: Candidate, big: Candidate, epsilon: float, cost_metric: str, thresholds: int
) -> dict[str, Any]:
    """What a maxp cascade of (little, big) reaches on the candidates' split."""
    labels = little.preds.labels
    outputs = pair_outputs(little.preds.logits, big.preds.logits, labels, "maxp", False)
    curve = build_curve(outputs, threshold_grid(thresholds), little.cost, big.cost)
    acc_big = big.preds.acc
    index = choose_near_big(curve, acc_big, epsilon, cost_metric)
    big_cost = big.cost.get(cost_metric)
    row: dict[str, Any] = {
        "little": little.name,
        "big": big.name,
        "acc_little": little.preds.acc,
        "acc_big": acc_big,
        "acc_oracle": float((little.preds.correct | big.preds.correct).mean()),
        f"little_{cost_metric}": little.cost.get(cost_metric),
        f"big_{cost_metric}": big_cost,
        "threshold": math.nan,
        "acc_cascade": math.nan,
        "p_big": math.nan,
        "saving": -math.inf,
    }
    if index is not None:
        point = curve.row(index)
        cost = point["energy_expected_uj" if cost_metric == "energy_uj" else "latency_expected_ms"]
        row.update(
            threshold=point["threshold"],
            acc_cascade=point["acc"],
            p_big=point["p_big"],
            saving=1.0 - cost / big_cost,
        )
    return row


def rank_pairs(
    pool: list[Candidate],
    matrices: dict[str, np.ndarray],
    *,
    epsilon: float = 0.003,
    cost_metric: str = "energy_uj",
    rank_by: str = "saving",
    thresholds: int = 2001,
) -> list[dict[str, Any]]:
    """Every (little, big) pair with cost(little) < cost(big), best first."""
    rows = []
    for i, little in enumerate(pool):
        for j, big in enumerate(pool):
            c_little, c_big = little.cost.get(cost_metric), big.cost.get(cost_metric)
            if not (math.isfinite(c_little) and math.isfinite(c_big) and c_little < c_big):
                continue
            row = pair_report(little, big, epsilon, cost_metric, thresholds)
            row["exactly_one"] = float(matrices["exactly_one"][i, j])
            row["symmetric"] = float(matrices["symmetric"][i, j])
            rows.append(row)
    rows.sort(key=lambda r: (-r[rank_by], -r["exactly_one"], r["little"], r["big"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def collect_pool(
    sweep_dir: Path,
    split: str,
    predict_missing: bool = True,
    batch_size: int = 256,
    device: str = "cpu",
    cut: tuple[float, int] = (0.5, 0),
) -> list[Candidate]:
    """One candidate per finished run of the sweep with predictions on `split` (`select`: the
    part of val the cascade task chooses on, for the cut (holdout_fraction, split_seed); ranking
    pairs there keeps the held-out part unseen by every choice).

    A run without predictions is predicted here (all splits, checked against its metrics)
    unless `predict_missing` is False, in which case it is skipped with a warning.
    """
    pool: list[Candidate] = []
    for job in scan_sweep(sweep_dir).jobs:
        run_dir = Path(job["job_dir"])
        if not (run_dir / "preds" / "info.json").is_file():
            if not predict_missing:
                log.warning("skipping %s: no predictions (predict_missing=false)", run_dir)
                continue
            predict_finished_run(run_dir, list(SPLITS), batch_size, 0, device, True)
        preds, info = load_run(run_dir, "val" if split == "select" else split)
        if split == "select":
            preds = subset(preds, split_val(len(preds), *cut)["select"], "select")
        pool.append(Candidate(job["label"], preds, info_cost(info)))
    if len(pool) < 2:
        raise OdimoError(
            f"need at least 2 finished runs with predictions under {sweep_dir}, found {len(pool)}"
        )
    for other in pool[1:]:
        check_pair(pool[0].preds, other.preds)
    return pool
