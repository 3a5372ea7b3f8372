# SPDX-License-Identifier: Apache-2.0
"""A big/little cascade of two networks: the little one runs on every input, the big one only
where the little one is unsure (confidence < threshold).

Scores (`scores`), routing and the vectorised threshold sweep (`routing`), the curve and the
threshold choices (`curve`), expected cost on a platform (`cost`), a hash memory and its
evaluation stream (`memory`), complementarity of network pairs (`complementarity`), cached
predictions (`preds`, `predict`) and the online LightningModule (`online`).
"""

from odimo.cascade.curve import (
    CHOICES,
    Curve,
    build_curve,
    choose_budget,
    choose_max_acc,
    choose_near_big,
)
from odimo.cascade.expected_cost import NetCost, expected_cost, worst_case_cost
from odimo.cascade.preds import Predictions, PredictionsError, check_pair, load_predictions
from odimo.cascade.routing import PairOutputs, pair_outputs, sweep, sweep_naive, threshold_grid
from odimo.cascade.scores import SCORES, confidence, oracle_confidence

__all__ = [
    "CHOICES",
    "SCORES",
    "Curve",
    "NetCost",
    "PairOutputs",
    "Predictions",
    "PredictionsError",
    "build_curve",
    "check_pair",
    "choose_budget",
    "choose_max_acc",
    "choose_near_big",
    "confidence",
    "expected_cost",
    "load_predictions",
    "oracle_confidence",
    "pair_outputs",
    "sweep",
    "sweep_naive",
    "threshold_grid",
    "worst_case_cost",
]
