# SPDX-License-Identifier: Apache-2.0
"""The search's schedules (temperature, α warm-up, λ ramp), each its own callback, and the
hand-over callback delegating to the policy of `odimo.nn.handover`."""

from __future__ import annotations

import math

import pytest
import torch

from odimo.callbacks import (
    AlphaWarmup,
    MappingHandover,
    StrengthRamp,
    TemperatureSchedule,
    search_schedules,
)
from odimo.errors import ConfigError
from odimo.lit.optim import MultiOptimizer


def schedule(**kw) -> TemperatureSchedule:
    s = TemperatureSchedule(**kw)
    s.steps_per_epoch, s.total_steps = 10, 40  # 4 epochs of 10 steps
    return s


def ramp(share: float, alpha_warmup_epochs: int = 0) -> StrengthRamp:
    s = StrengthRamp(share, regularizer=None, alpha_warmup_epochs=alpha_warmup_epochs)
    s.steps_per_epoch, s.total_steps = 10, 40
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
    s = ramp(0.5)
    assert s.strength_scale(0) == pytest.approx(0.01)
    half = round(0.5 * 39)
    assert s.strength_scale(half // 2) == pytest.approx(0.01 ** (1 - (half // 2) / 39 / 0.5))
    assert s.strength_scale(39) == 1.0 and s.strength_scale(25) == 1.0
    assert ramp(0.0).strength_scale(0) == 1.0  # off
    # after an α warm-up of 2 epochs the ramp starts at step 20
    late = ramp(0.5, alpha_warmup_epochs=2)
    assert late.strength_scale(19) == late.strength_scale(20) == pytest.approx(0.01)


def test_search_schedules_add_only_what_is_on():
    temperature = {"initial": 1.0, "final": 1e-3, "decay": 0.045}
    plain = search_schedules(temperature)
    assert [type(c) for c in plain] == [TemperatureSchedule]
    full = search_schedules(temperature, 2, 0.3, regularizer=object())
    assert [type(c) for c in full] == [TemperatureSchedule, AlphaWarmup, StrengthRamp]
    assert full[0].final == 1e-3 and full[1].epochs == 2 and full[2].share == 0.3


def test_schedules_keep_no_callback_state():
    """Resume matches callback state by class name; these keep none (a function of the step),
    so checkpoints written before the split into three classes resume the same way."""
    for callback in search_schedules({"initial": 1.0}, 2, 0.3, regularizer=object()):
        assert callback.state_dict() == {}


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


def test_handover_callback_chooses_with_the_policy():
    """The callback's choice is the library's (`odimo.nn.handover.select_epoch`)."""
    from tests.nn.test_handover import RECORDS

    h = MappingHandover(None, "unused.json", rule="best_within_final", target=60.0)
    h.records = RECORDS
    assert h.choose()[0]["epoch"] == 2


def test_unknown_handover_rule_is_a_config_error():
    with pytest.raises(ConfigError, match="search.handover"):
        MappingHandover(None, "x.json", rule="best_soft")


def test_alpha_warmup_pauses_alpha_for_its_epochs_only():
    from types import SimpleNamespace

    multi = MultiOptimizer({"alpha": torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])})
    warmup = AlphaWarmup(2)
    paused = []
    for epoch in range(4):
        warmup.on_train_epoch_start(SimpleNamespace(current_epoch=epoch, optimizers=[multi]), None)
        paused.append("alpha" in multi.paused)
    assert paused == [True, True, False, False]
