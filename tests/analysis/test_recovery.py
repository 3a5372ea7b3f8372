# SPDX-License-Identifier: Apache-2.0
"""The recovery table: drop, gain, recovery and their standard error over paired seeds."""

from __future__ import annotations

import math

import pytest

from odimo.analysis.recovery import format_rows, recovery_rows, sigmas_of


def _record(network: str, seed: int | None, ideal: float, **chip: float) -> dict:
    record = {"network": network, "model": "res20", "dataset": "fashion_mnist", "seed": seed}
    record["ideal"] = ideal
    record.update({f"sigma_{name}_mean": value for name, value in chip.items()})
    return record


def test_recovery_is_the_mean_gain_over_the_mean_drop_with_the_paired_standard_error() -> None:
    reference = [
        _record("all_analog", 0, 0.82, **{"0": 0.80, "1": 0.79}),
        _record("all_analog", 1, 0.84, **{"0": 0.83, "1": 0.80}),
        _record("all_analog", 2, 0.83, **{"0": 0.81, "1": 0.77}),  # no chip-aware seed 2
        _record("min_latency", 0, 0.85, **{"0": 0.84, "1": 0.83}),
    ]
    aware = [
        _record("all_analog", 0, 0.81, **{"0": 0.81, "1": 0.81}),
        _record("all_analog", 1, 0.82, **{"0": 0.82, "1": 0.81}),
        _record("other", 0, 0.80, **{"0": 0.80, "1": 0.80}),  # not in the reference
    ]
    rows = recovery_rows(aware, reference)
    assert [(r["network"], r["sigma_lsb"]) for r in rows] == [
        ("all_analog", 0.0),
        ("all_analog", 1.0),
    ]
    at1 = rows[1]
    assert at1["seeds"] == "0 1"
    # seeds 0 and 1 only: ideal 0.83, reference chip 0.795, chip-aware 0.81
    assert at1["ideal"] == pytest.approx(0.83)
    assert at1["reference_chip"] == pytest.approx(0.795)
    assert at1["aware_chip"] == pytest.approx(0.81)
    assert at1["drop_pt"] == pytest.approx(3.5)
    assert at1["gain_pt"] == pytest.approx(1.5)
    assert at1["recovery"] == pytest.approx(1.5 / 3.5)
    # per-seed gains 2 and 1 pt: standard deviation 0.7071, standard error 0.5 pt
    assert at1["gain_se_pt"] == pytest.approx(0.5)
    assert at1["recovery_se"] == pytest.approx(0.5 / 3.5)
    at0 = rows[0]  # σ = 0: gains +1, -1 pt over a 1.5-pt drop
    assert at0["gain_pt"] == pytest.approx(0.0, abs=1e-12)
    assert at0["drop_pt"] == pytest.approx(1.5)
    assert at0["gain_se_pt"] == pytest.approx(1.0)


def test_one_seed_has_no_standard_error_and_no_drop_no_recovery() -> None:
    reference = [_record("a", 3, 0.80, **{"1": 0.81})]  # the chip reads better than ideal
    aware = [_record("a", 3, 0.80, **{"1": 0.82})]
    (row,) = recovery_rows(aware, reference)
    assert row["gain_pt"] == pytest.approx(1.0)
    assert math.isnan(row["gain_se_pt"]) and math.isnan(row["recovery"])
    assert math.isnan(row["recovery_se"])
    line = format_rows([row])[1]
    assert "+1.00" in line and "—" in line and "±" not in line


def test_two_runs_of_one_network_and_seed_are_refused() -> None:
    runs = [_record("a", 0, 0.8, **{"1": 0.7}), _record("a", 0, 0.81, **{"1": 0.72})]
    with pytest.raises(ValueError, match="two runs of a with seed 0"):
        recovery_rows(runs, [_record("a", 0, 0.8, **{"1": 0.7})])
    with pytest.raises(ValueError, match="reference has two runs"):
        recovery_rows([_record("a", 0, 0.8, **{"1": 0.7})], runs)


def test_sigmas_are_read_from_the_mean_columns_in_order() -> None:
    record = _record("a", 0, 0.8, **{"0": 0.7, "0.5": 0.69, "2": 0.6})
    record["sigma_2_std"] = 0.01
    assert sigmas_of(record) == [0.0, 0.5, 2.0]
