# SPDX-License-Identifier: Apache-2.0
"""The hand-over policy on plain records and a toy network: epoch choice, the candidates' front,
finishing the mapping (projection, slack filling)."""

from __future__ import annotations

import copy

import pytest
import torch

from odimo.errors import ConfigError
from odimo.models import ModelSpec, build_model
from odimo.nn import NetworkCost, search_layers
from odimo.nn.handover import (
    HANDOVER_RULES,
    finish_mapping,
    hard_cost,
    select_epoch,
    update_front,
)
from odimo.nn.network_cost import LatencyRegularizer, TargetRegularizer
from odimo.nn.slack import fill_slack

RECORDS = [  # the earliest epoch is the most accurate and the most expensive
    {"epoch": 0, "acc": 0.90, "cost": 100.0, "stored": True},
    {"epoch": 1, "acc": 0.85, "cost": 60.0, "stored": True},
    {"epoch": 2, "acc": 0.88, "cost": 40.0, "stored": True},
    {"epoch": 3, "acc": 0.86, "cost": 40.0, "stored": False},
]


def chosen_epoch(rule: str, target: float | None = None) -> int:
    return select_epoch(copy.deepcopy(RECORDS), rule, target)[0]["epoch"]


def test_rules_choose_the_expected_epoch():
    assert chosen_epoch("best_hard") == 0
    assert chosen_epoch("final") == 3
    # within the final cost (40): epoch 2 (0.88) beats the final epoch (0.86)
    chosen, report = select_epoch(RECORDS, "best_within_final")
    assert chosen["epoch"] == 2 and report["bound"] == 40.0 and report["final_epoch"] == 3
    assert [r["epoch"] for r in report["epochs"]] == [0, 1, 2, 3]
    # a target of 60 admits epochs 1, 2 (and 3); the most accurate wins
    assert chosen_epoch("best_within_final", 60.0) == 2
    assert chosen_epoch("best_within_final", 100.0) == 0


def test_records_in_any_order_give_the_same_choice():
    shuffled = [RECORDS[i] for i in (3, 0, 2, 1)]
    assert select_epoch(shuffled, "final")[0]["epoch"] == 3
    assert select_epoch(shuffled, "best_within_final")[0]["epoch"] == 2


def test_an_unmet_target_takes_the_cheapest_stored_epoch():
    chosen, report = select_epoch(RECORDS, "best_within_final", 10.0)
    assert (chosen["epoch"], chosen["cost"]) == (2, 40.0) and report["bound"] == 10.0


def test_no_records_and_bad_rules():
    assert select_epoch([], "final") == (None, {"rule": "final"})
    with pytest.raises(ConfigError, match="search.handover must be one of"):
        select_epoch(RECORDS, "best_soft")
    assert set(HANDOVER_RULES) == {"best_within_final", "final", "best_hard"}


def test_front_keeps_only_non_dominated_epochs():
    records: list[dict] = []
    drops = []
    for epoch, acc, cost in [(0, 0.8, 100.0), (1, 0.7, 50.0), (2, 0.85, 40.0), (3, 0.6, 45.0)]:
        records, dropped = update_front(records, {"epoch": epoch, "acc": acc, "cost": cost})
        drops.append(dropped)
    # epoch 2 beats 0 and 1 (cheaper and more accurate); epoch 3 is beaten by 2, never stored
    assert drops == [[], [], [0, 1], []]
    assert [r["epoch"] for r in records if r.get("stored")] == [2]
    # a re-validated epoch (after a resume) replaces its record instead of adding one
    records, _ = update_front(records, {"epoch": 3, "acc": 0.9, "cost": 45.0})
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    assert sorted(r["epoch"] for r in records if r.get("stored")) == [2, 3]


SPEC = ModelSpec("res20", (1, 16, 16), 10)


def toy(diana, analog: bool):
    """A small search network whose α all lean to one unit."""
    torch.manual_seed(0)
    model = build_model(SPEC, "search", diana)
    for layer in search_layers(model):
        layer.init_quantizers()
        with torch.no_grad():
            layer.alpha[1 if analog else 0] += 0.5 + torch.rand(layer.out_channels)
    return NetworkCost(model, diana, SPEC.input_size)


def test_finish_mapping_fills_slack_exactly_as_fill_slack(diana):
    network, twin = toy(diana, analog=True), toy(diana, analog=True)
    report = finish_mapping(network, None, None, project=False, fill="latency")
    assert report["slack_filled"]["channels"] == fill_slack(twin, "latency")
    assert sum(report["slack_filled"]["channels"].values()) > 0  # all-analog leaves slack
    assert report["handed_over_cost"] == hard_cost(twin) == hard_cost(network)
    assert "target" not in report and "target_projection" not in report


def test_finish_mapping_projects_onto_the_target(diana):
    network = toy(diana, analog=False)  # all digital: above any lower target
    reg = TargetRegularizer(LatencyRegularizer(0.0), 1.0)
    top = reg.hard_cost(network)
    target = 0.8 * top
    reg.target = target
    unprojected = finish_mapping(network, reg, target, project=False)
    assert unprojected["target_met"] is False and unprojected["handed_over_cost"] == top
    report = finish_mapping(network, reg, target, project=True)
    assert report["target_projection"]["met"] and report["target_met"] is True
    assert report["handed_over_cost"] <= target * (1 + 1e-9) < top
