# SPDX-License-Identifier: Apache-2.0
"""Calibration: known constants recovered from synthetic tables; errors and regret by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from odimo.calibration.fit import Measurements, evaluate, fit_platform, selection_regret
from odimo.calibration.synthetic import TRUE_CONSTANTS, synthetic_rows
from odimo.errors import OdimoError
from odimo.hw import get_platform

FITTED = (
    "digital_cycles_per_tile",
    "load_store_divisor",
    "weight_load_cycles_per_row",
    "analog_pass_cycles",
    "power_digital_mw",
    "power_analog_mw",
    "power_both_mw",
)


def table(noise: float, layers: int = 120, seed: int = 0) -> Measurements:
    rows = synthetic_rows(layers=layers, noise=noise, seed=seed)
    return Measurements([{k: str(v) for k, v in r.items()} for r in rows], get_platform(), "t")


def test_noise_free_table_recovers_the_true_constants_exactly():
    fitted = fit_platform(get_platform("diana"), table(0.0), "cal").constants
    for name in FITTED:
        assert getattr(fitted, name) == pytest.approx(getattr(TRUE_CONSTANTS, name), rel=1e-9)
    assert fitted.analog_cols == TRUE_CONSTANTS.analog_cols  # structure is not fitted


def test_noisy_table_recovers_the_constants_within_a_few_percent():
    data = table(0.05, layers=200)
    prior = get_platform("diana")
    fitted = fit_platform(prior, data, "cal")
    for name in FITTED:
        assert getattr(fitted.constants, name) == pytest.approx(
            getattr(TRUE_CONSTANTS, name), rel=0.03
        ), name
    before, after = evaluate(prior, data), evaluate(fitted, data)
    assert after["latency"]["median_rel_error"] < 0.05 < before["latency"]["median_rel_error"]
    assert after["energy"]["median_rel_error"] < before["energy"]["median_rel_error"]
    assert fitted.name == "cal" and fitted.cheap_unit == "analog"


def test_selection_regret_by_hand():
    pred = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 9.0])
    true = np.array([4.0, 2.0, 3.0, 1.0, 2.0, 7.0])
    got = selection_regret(pred, true, ["a", "a", "a", "b", "b", "c"])
    # group a chooses row 0 (4 vs best 2: regret 1.0); b chooses row 4 (2 vs 1: 1.0); c alone
    assert got == {"groups": 2, "mean_regret": 1.0, "max_regret": 1.0, "wrong": 2}


def test_missing_field_or_bad_value_is_one_clear_error():
    rows = [{k: str(v) for k, v in r.items()} for r in synthetic_rows(layers=2, noise=0.0)]
    without = [{k: v for k, v in r.items() if k != "cycles_analog"} for r in rows]
    with pytest.raises(OdimoError, match="lacks column.*cycles_analog"):
        Measurements(without, get_platform(), "m.csv")
    rows[1]["c_in"] = "abc"
    with pytest.raises(OdimoError, match=r"m.csv row 3: c_in must be a number"):
        Measurements(rows, get_platform(), "m.csv")


def test_calibrated_constants_change_only_the_fitted_costs():
    prior = get_platform("diana")
    slower = dataclasses.replace(prior.constants, analog_pass_cycles=36.4)
    chip = type(prior)(constants=slower)
    data = table(0.0, layers=10)
    base = prior.unit_cycles(data.counts, data.table)
    other = chip.unit_cycles(data.counts, data.table)
    assert np.allclose(other[:, 0].numpy(), base[:, 0].numpy())  # digital unchanged
    rows, passes = chip.cycle_terms(data.counts, data.table)["analog"]
    assert np.allclose((other[:, 1] - base[:, 1]).numpy(), (passes * 18.2).numpy())
