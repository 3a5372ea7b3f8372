# SPDX-License-Identifier: Apache-2.0
"""The summary's one-line verdict: where the run landed between the baselines."""

from __future__ import annotations

import pytest

from odimo.pipeline.summary import verdict

REFERENCE = {
    "all_digital": {"latency_ms": 0.4, "energy_uj": 10.0},
    "min_latency": {"latency_ms": 0.2, "energy_uj": 6.0},
}


def test_latency_run_is_placed_between_all_digital_and_min_latency() -> None:
    line = verdict(
        {
            "reg": "latency",
            "reference": REFERENCE,
            "final/cost/latency_hard_ms": 0.25,
            "final/cost/energy_hard_uj": 7.0,
            "final/test/acc_hard": 0.97,
        }
    )
    # 0.25 ms: 37.5 % below 0.4 ms; (0.4 - 0.25) / (0.4 - 0.2) = 75 % of the way
    assert line == (
        "  found: 0.2500 ms at test accuracy 0.9700, 37.5 % below all-digital (0.4000 ms); "
        "min_latency 0.2000 ms; 75 % of the way from all-digital to min_latency"
    )


def test_energy_runs_speak_energy_and_equal_baselines_say_so() -> None:
    metrics = {
        "reg": "power",
        "reference": REFERENCE,
        "final/cost/latency_hard_ms": 0.3,
        "final/cost/energy_hard_uj": 9.0,
        "final/test/acc_hard": 0.9,
    }
    assert "9.0000 µJ" in verdict(metrics) and "25 % of the way" in verdict(metrics)
    flat = {"all_digital": {"latency_ms": 0.2}, "min_latency": {"latency_ms": 0.2}}
    metrics.update(reg="latency", reference=flat, **{"final/cost/latency_hard_ms": 0.2})
    assert verdict(metrics).endswith("nothing to trade")


@pytest.mark.parametrize("reference", [None, {"all_digital": {"latency_ms": 0.4}}])
def test_no_verdict_without_both_baselines(reference) -> None:
    assert verdict({"reference": reference, "final/cost/latency_hard_ms": 0.3}) is None
