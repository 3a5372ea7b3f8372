# SPDX-License-Identifier: Apache-2.0
"""The search's schedules (temperature, α warm-up, λ ramp) and the hand-over choice."""

from __future__ import annotations

import math

import pytest
import torch

from odimo.callbacks import MappingHandover, TemperatureSchedule
from odimo.errors import ConfigError
from odimo.lit.optim import MultiOptimizer


def schedule(**kw) -> TemperatureSchedule:
    s = TemperatureSchedule(**kw)
    s.steps_per_epoch, s.total_steps = 10, 40  # 4 epochs of 10 steps
    return s


def test_per_step_temperature_reaches_final_at_the_last_step():
    s = schedule(initial=1.0, final=1e-3)
    assert s.temperature(0, 0) == pytest.approx(1.0)
    assert s.temperature(3, 39) == pytest.approx(1e-3)
    # exponential: the middle step is the geometric mean
    assert s.temperature(1, 19) == pytest.approx(1e-3 ** (19 / 39))
    temps = [s.temperature(step // 10, step) for step in range(40)]
    assert all(a > b for a, b in zip(temps, temps[1:]))


def test_reference_per_epoch_rule_is_kept():
    s = schedule(initial=1.0, final=None, decay=0.045)
    for epoch in range(4):
        for step in (epoch * 10, epoch * 10 + 9):  # constant within an epoch
            assert s.temperature(epoch, step) == pytest.approx(math.exp(-0.045 * epoch))


def test_alpha_warmup_holds_the_temperature_then_anneals_over_the_rest():
    s = schedule(initial=1.0, final=1e-2, alpha_warmup_epochs=2)
    assert s.temperature(0, 0) == s.temperature(1, 19) == pytest.approx(1.0)
    assert s.temperature(2, 20) == pytest.approx(1.0)
    assert s.temperature(3, 39) == pytest.approx(1e-2)


def test_strength_ramp_rises_from_a_hundredth_to_one():
    s = schedule(strength_ramp=0.5)
    assert s.strength_scale(0) == pytest.approx(0.01)
    half = round(0.5 * 39)
    assert s.strength_scale(half // 2) == pytest.approx(0.01 ** (1 - (half // 2) / 39 / 0.5))
    assert s.strength_scale(39) == 1.0 and s.strength_scale(25) == 1.0
    assert schedule().strength_scale(0) == 1.0  # off by default


def test_paused_optimizer_does_not_move_alpha():
    alpha = torch.nn.Parameter(torch.zeros(3))
    weight = torch.nn.Parameter(torch.zeros(3))
    multi = MultiOptimizer(
        {
            "alpha": torch.optim.Adam([alpha], lr=0.1),
            "weights": torch.optim.SGD([weight], lr=0.1),
        }
    )
    multi.paused.add("alpha")
    (alpha.sum() + weight.sum()).backward()
    multi.step()
    assert torch.equal(alpha.detach(), torch.zeros(3))
    assert torch.allclose(weight.detach(), torch.full((3,), -0.1))


def handover(records, rule="best_within_final", target=None) -> MappingHandover:
    h = MappingHandover(None, "unused.json", rule=rule, target=target)
    h.records = records
    return h


RECORDS = [  # the earliest epoch is the most accurate and the most expensive
    {"epoch": 0, "acc": 0.90, "cost": 100.0, "stored": True},
    {"epoch": 1, "acc": 0.85, "cost": 60.0, "stored": True},
    {"epoch": 2, "acc": 0.88, "cost": 40.0, "stored": True},
    {"epoch": 3, "acc": 0.86, "cost": 40.0, "stored": False},
]


def test_handover_rules():
    assert handover(RECORDS, "best_hard").choose()[0]["epoch"] == 0
    assert handover(RECORDS, "final").choose()[0]["epoch"] == 3
    # within the final cost (40): epoch 2 beats the final epoch
    chosen, report = handover(RECORDS).choose()
    assert chosen["epoch"] == 2 and report["bound"] == 40.0
    # a target of 60 admits epoch 1 and 2; the more accurate wins
    assert handover(RECORDS, target=60.0).choose()[0]["epoch"] == 2
    assert handover(RECORDS, target=100.0).choose()[0]["epoch"] == 0


def test_handover_with_an_unmet_target_takes_the_cheapest_epoch():
    chosen, _ = handover(RECORDS, target=10.0).choose()
    assert chosen["cost"] == 40.0 and chosen["stored"]


def test_unknown_handover_rule_is_a_config_error():
    with pytest.raises(ConfigError, match="search.handover"):
        MappingHandover(None, "x.json", rule="best_soft")
