# SPDX-License-Identifier: Apache-2.0
"""When a characterization record is already done: per-target fingerprints of the inputs."""

from __future__ import annotations

from odimo.characterization.catalogue import TimingOptions
from odimo.characterization.requests import Request, merge_record, plan_network, target_inputs
from odimo.io import config_fingerprint


def request(diana, **kw) -> Request:
    base = dict(
        input_size=(3, 32, 32),
        num_classes=10,
        mappings=("all_digital", "min_latency"),
        timing=TimingOptions(repeats=3, warmup=1),
        targets={"diana": diana, "host_cpu": None},
    )
    return Request(**{**base, **kw})


def fresh(req: Request, targets) -> dict:
    cols = {t: [f"{t}_a", f"{t}_b"] for t in targets}
    costs = {c: float(len(c)) for cs in cols.values() for c in cs}
    return {
        "input_size": list(req.input_size),
        "num_classes": req.num_classes,
        "costs": costs,
        "columns": cols,
    }


def test_plan_follows_each_targets_inputs(diana):
    req = request(diana)
    new = plan_network("probe", "s3", 0, None, req)
    assert new.targets == ("diana", "host_cpu") and new.rebuild and new.reason == "new"
    record = merge_record(None, fresh(req, new.targets), new, req)
    assert record["fingerprints"]["diana"] == config_fingerprint(target_inputs(req, "diana"))
    assert plan_network("probe", "s3", 0, record, req).targets == ()  # same request: done
    # other mappings: only diana again, its old columns replaced, host_cpu kept
    other = request(diana, mappings=("min_latency",))
    work = plan_network("probe", "s3", 0, record, other)
    assert work.targets == ("diana",) and not work.rebuild
    assert work.reason == "diana changed (mappings)"
    again = merge_record(
        record,
        fresh(other, ["diana"]) | {"costs": {"diana_c": 1.0}, "columns": {"diana": ["diana_c"]}},
        work,
        other,
    )
    assert set(again["costs"]) == {"diana_c", "host_cpu_a", "host_cpu_b"}
    assert plan_network("probe", "s3", 0, again, other).targets == ()
    # other timing: only the host target
    slow = request(diana, timing=TimingOptions(repeats=9, warmup=1))
    assert plan_network("probe", "s3", 0, record, slow).targets == ("host_cpu",)
    # another input size: everything, and the record is rebuilt (nothing of 32x32 kept)
    small = request(diana, input_size=(1, 16, 16), targets={"diana": diana})
    work = plan_network("probe", "s3", 0, record, small)
    assert work.targets == ("diana",) and work.rebuild and work.reason == "changed input_size"
    rebuilt = merge_record(record, fresh(small, ["diana"]), work, small)
    assert rebuilt["targets"] == ["diana"] and set(rebuilt["costs"]) == {"diana_a", "diana_b"}


def test_a_record_without_inputs_is_measured_again(diana):
    old = {
        "format": "odimo.catalogue/1",
        "input_size": [3, 32, 32],
        "num_classes": 10,
        "targets": ["diana"],
        "costs": {"diana_all_digital_ms": 1.0},
    }
    work = plan_network("probe", "s3", 0, old, request(diana))
    assert work.rebuild and work.reason == "record without inputs"
