# SPDX-License-Identifier: Apache-2.0
"""Measuring the networks of a plan: costs from the cost models, host latency interleaved.

The networks to measure are shuffled with the request's seed and measured in groups of
`timing.group`: each group's networks are built once, costed on every cost-model platform, and
timed on each host device against each other (`timing.measure_interleaved`: seeded random order
per round, median over rounds). A group's records are written when it is done.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import torch

from odimo.characterization.catalogue import (
    HOST_DEVICES,
    build_network,
    host_columns,
    load_record,
    net_key,
    platform_costs,
    record_path,
    write_json_atomic,
)
from odimo.characterization.requests import Request, Work, merge_record
from odimo.characterization.timing import measure_interleaved


def time_hosts(nets: dict[str, tuple], works: dict[str, Work], request: Request) -> None:
    """Time every host target on the networks that need it, all of them interleaved."""
    timing = request.timing
    for name, platform in request.targets.items():
        keys = [k for k, w in works.items() if name in w.targets]
        if platform is not None or not keys:
            continue
        device = torch.device(HOST_DEVICES[name])
        x = torch.randn(timing.batch, *request.input_size, device=device)
        items = {k: (nets[k][0].to(device), (x,)) for k in keys}
        stats = measure_interleaved(
            items,
            rounds=timing.repeats,
            warmup=timing.warmup,
            threads=timing.threads,
            seed=request.seed,
        )
        for k in keys:
            columns = host_columns(name, stats[k])
            nets[k][1]["costs"].update(columns)
            nets[k][1]["columns"][name] = list(columns)


def measure_group(works: list[Work], out_dir: Path, request: Request) -> None:
    """Build, cost and time one group of networks; write their records."""
    nets: dict[str, tuple] = {}
    by_key = {net_key(w.space, w.law, w.net_id): w for w in works}
    for key, w in by_key.items():
        torch.manual_seed(request.seed)  # the same untrained weights in every run
        model, geometry, record = build_network(
            w.space, w.law, w.net_id, request.input_size, request.num_classes
        )
        for name in w.targets:
            platform = request.targets[name]
            if platform is not None:
                costs = platform_costs(model, geometry, platform, request.mappings)
                record["costs"].update(costs)
                record["columns"][name] = list(costs)
        nets[key] = (model, record)
    time_hosts(nets, by_key, request)
    for key, w in by_key.items():
        path = record_path(out_dir, w.space, w.law, w.net_id)
        previous = load_record(path) if path.is_file() else None
        write_json_atomic(path, merge_record(previous, nets[key][1], w, request))


def measure_works(
    works: list[Work],
    out_dir: Path,
    request: Request,
    advance: Callable[[int], None] = lambda n: None,
) -> list[str]:
    """Measure every work item (shuffled with the seed, in groups); the keys in measured order."""
    order = random.Random(request.seed).sample(works, len(works))
    size = max(int(request.timing.group), 1)
    for start in range(0, len(order), size):
        group = order[start : start + size]
        measure_group(group, out_dir, request)
        advance(len(group))
    return [net_key(w.space, w.law, w.net_id) for w in order]
