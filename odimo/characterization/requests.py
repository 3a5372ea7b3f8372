# SPDX-License-Identifier: Apache-2.0
"""What a characterization measures, and when a record of it is already done.

A record stores, per target (a host device or a cost-model platform), the inputs its columns
depend on and their fingerprint (`odimo.io.config_fingerprint`): the input size and class count
for every target; the mappings and the platform's constants for a cost-model platform; the
timing settings and the CPU model for a host device. A request whose fingerprint for a target
differs measures that target again; a changed input size or class count rebuilds the whole
record (columns measured at another size are dropped, never mixed with new ones).
"""

from __future__ import annotations

import platform as host_platform
from dataclasses import asdict, dataclass
from typing import Any

from odimo.characterization.catalogue import TimingOptions
from odimo.hw import platform_to_config
from odimo.hw.platform import Platform
from odimo.io import changed_keys, config_fingerprint

#: Inputs shared by every target of a record: a change rebuilds the whole record.
SHARED_INPUTS = ("input_size", "num_classes")


@dataclass(frozen=True)
class Request:
    """One characterization request (validated settings of conf/characterize.yaml)."""

    input_size: tuple[int, int, int]
    num_classes: int
    mappings: tuple[str, ...]
    timing: TimingOptions
    #: target name -> cost-model platform, or None for a host device (timed)
    targets: dict[str, Platform | None]
    seed: int = 0


def cpu_model() -> str:
    """The host CPU's model name (what a host timing is only valid on)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return host_platform.processor() or host_platform.machine()


def target_inputs(request: Request, name: str) -> dict[str, Any]:
    """Everything the columns of target `name` depend on."""
    inputs: dict[str, Any] = {
        "input_size": list(request.input_size),
        "num_classes": request.num_classes,
    }
    platform = request.targets[name]
    if platform is None:
        inputs["timing"] = asdict(request.timing)
        inputs["cpu"] = cpu_model()
    else:
        inputs["mappings"] = list(request.mappings)
        inputs["platform"] = platform_to_config(platform)
    return inputs


@dataclass(frozen=True)
class Work:
    """What to measure of one network, and why (empty `targets`: up to date)."""

    space: str
    law: str
    net_id: int
    targets: tuple[str, ...]
    rebuild: bool
    reason: str


def plan_network(space: str, law: str, net_id: int, record: dict | None, request: Request) -> Work:
    """Compare a network's record with the request: the targets to (re)measure and why."""
    asked = tuple(request.targets)
    if record is None:
        return Work(space, law, net_id, asked, True, "new")
    inputs = record.get("inputs") or {}
    if not inputs:  # written before records carried their inputs
        return Work(space, law, net_id, asked, True, "record without inputs")
    shared = {k: record.get(k) for k in SHARED_INPUTS}
    wanted = {"input_size": list(request.input_size), "num_classes": request.num_classes}
    if shared != wanted:
        keys = ", ".join(changed_keys(shared, wanted))
        return Work(space, law, net_id, asked, True, f"changed {keys}")
    stale, reasons = [], []
    for name in asked:
        new = target_inputs(request, name)
        if name not in inputs:
            stale.append(name)
            reasons.append(f"{name} new")
        elif record.get("fingerprints", {}).get(name) != config_fingerprint(new):
            stale.append(name)
            keys = ", ".join(changed_keys(inputs[name], new)[:4]) or "?"
            reasons.append(f"{name} changed ({keys})")
    return Work(space, law, net_id, tuple(stale), False, "; ".join(reasons) or "up to date")


def merge_record(previous: dict | None, fresh: dict, work: Work, request: Request) -> dict:
    """The record after measuring `work`: fresh columns replace the re-measured targets' old
    ones; other targets are kept unless the record is rebuilt; joined results are kept."""
    inputs = {name: target_inputs(request, name) for name in work.targets}
    record = dict(fresh)
    old = previous if (previous is not None and not work.rebuild) else {}
    kept = {t: cols for t, cols in old.get("columns", {}).items() if t not in work.targets}
    record["costs"] = {
        **{c: old["costs"][c] for cols in kept.values() for c in cols if c in old["costs"]},
        **fresh["costs"],
    }
    record["columns"] = {**kept, **fresh["columns"]}
    record["inputs"] = {**{t: old["inputs"][t] for t in kept}, **inputs}
    record["fingerprints"] = {t: config_fingerprint(v) for t, v in record["inputs"].items()}
    record["targets"] = sorted(record["columns"])
    if previous is not None and previous.get("results"):
        record["results"] = previous["results"]
    return record
