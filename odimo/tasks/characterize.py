# SPDX-License-Identifier: Apache-2.0
"""The characterize task: measure sampled networks before training (IoTnets "calibration").

For every id of the range, in every space and law asked for: parameters, MACs, host latency
(the harness) and the cost of chosen mappings on each cost-model platform. One JSON record per
network under `output_dir/records/`, `catalogue.csv` over all records of the folder, and
`host.json` (CPU model, threads, torch version). Re-running skips the networks whose records
hold this request's measurements (`odimo.characterization.requests`); a changed request measures
the affected networks and targets again, and says why.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from odimo.characterization.candidates import join_runs
from odimo.characterization.catalogue import (
    HOST_DEVICES,
    TimingOptions,
    load_record,
    net_key,
    record_path,
    write_catalogue_csv,
    write_json_atomic,
)
from odimo.characterization.measure import measure_works
from odimo.characterization.requests import Request, Work, plan_network
from odimo.characterization.timing import host_info
from odimo.errors import ConfigError
from odimo.hw import load_platform
from odimo.nn.baselines import baseline_names
from odimo.spaces import get_law


def parse_ids(value: Any) -> list[int]:
    """`start:stop[:step]` (stop excluded), one integer, or a list of integers >= 0."""
    if OmegaConf.is_list(value):
        value = OmegaConf.to_container(value)
    ids: list[int] | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        ids = [value]
    elif isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        ids = list(value)
    elif isinstance(value, str) and value.count(":") in (1, 2):
        try:
            ids = list(range(*(int(part) for part in value.split(":"))))
        except ValueError:
            ids = None
    if not ids or min(ids) < 0:
        raise ConfigError(
            f"ids must be a range start:stop (e.g. ids=0:100, stop excluded), an integer or a "
            f"list of integers >= 0, and not empty; got {value!r}"
        )
    return ids


def _names(value: Any, key: str) -> list[str]:
    """A string or a list of strings from the config."""
    if OmegaConf.is_list(value):
        value = OmegaConf.to_container(value)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(v, str) for v in names):
        raise ConfigError(f"{key} must be a name or a list of names, got {value!r}")
    return names


def resolve_targets(names: list[str], mappings: list[str]) -> dict[str, Any]:
    """Host devices (timed, value None) and cost-model platforms by name."""
    targets: dict[str, Any] = {}
    for name in names:
        if name in HOST_DEVICES:
            if HOST_DEVICES[name] == "cuda" and not torch.cuda.is_available():
                raise ConfigError(f"platform {name} needs a CUDA device; none is available")
            targets[name] = None
        else:
            targets[name] = load_platform(name)
            offered = baseline_names(targets[name])
            unknown = [m for m in mappings if m not in offered]
            if unknown:
                raise ConfigError(
                    f"unknown mapping {unknown[0]!r} for platform {name} "
                    f"(choose from: {', '.join(offered)})"
                )
    return targets


def _plan(cfg: DictConfig) -> list[tuple[str, str, int]]:
    """(space, law, id) of every network asked for; unknown spaces or laws fail first."""
    spaces, laws = _names(cfg.space, "space"), _names(cfg.law, "law")
    ids = parse_ids(cfg.ids)
    for space in spaces:
        for law in laws:
            get_law(space, law)
    return [(s, law, i) for s in spaces for law in laws for i in ids]


def _positive_int(value: Any, key: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def parse_request(cfg: DictConfig) -> Request:
    """The request's settings, checked; ConfigError with one line otherwise."""
    mappings = _names(cfg.mappings, "mappings")
    targets = resolve_targets(_names(cfg.platforms, "platforms"), mappings)
    timing_cfg = OmegaConf.to_container(cfg.timing, resolve=True)
    known = {f.name for f in fields(TimingOptions)}
    unknown = sorted(set(timing_cfg) - known)
    if unknown:
        raise ConfigError(f"unknown timing key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    for key, value in timing_cfg.items():
        _positive_int(value, f"timing.{key}", 0 if key == "warmup" else 1)
    size = OmegaConf.to_container(cfg.input_size) if OmegaConf.is_list(cfg.input_size) else None
    if not isinstance(size, list) or len(size) != 3:
        raise ConfigError(f"input_size must be [C, H, W], got {cfg.input_size!r}")
    input_size = tuple(_positive_int(v, "input_size [C, H, W]") for v in size)
    return Request(
        input_size=input_size,
        num_classes=_positive_int(cfg.num_classes, "num_classes"),
        mappings=tuple(mappings),
        timing=TimingOptions(**timing_cfg),
        targets=targets,
        seed=int(cfg.seed),
    )


def run(cfg: DictConfig) -> dict[str, Any]:
    """Characterize every network of the plan whose record lacks this request's measurements."""
    plan = _plan(cfg)
    request = parse_request(cfg)
    out_dir = Path(str(cfg.output_dir)).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    works = []
    for space, law, net_id in plan:
        path = record_path(out_dir, space, law, net_id)
        works.append(
            plan_network(space, law, net_id, load_record(path) if path.is_file() else None, request)
        )
    todo = [w for w in works if w.targets]
    print(f"{len(plan)} networks asked, {len(plan) - len(todo)} up to date, {len(todo)} to measure")
    for reason, count in Counter(w.reason for w in todo).items():
        print(f"  {count} {'network' if count == 1 else 'networks'}: {reason}")
    write_json_atomic(out_dir / "host.json", host_info(request.timing.threads))
    start = time.perf_counter()
    order = _measure(todo, out_dir, request, bool(cfg.progress))
    elapsed = time.perf_counter() - start
    joined = 0
    if cfg.get("join_runs"):
        joined = join_runs(out_dir, [Path(str(p)) for p in _names(cfg.join_runs, "join_runs")])
    csv_path, n_rows = write_catalogue_csv(out_dir)
    if joined:
        print(f"joined the accuracies of {joined} finished runs")
    print(f"measured {len(todo)} networks in {elapsed:.1f} s; {csv_path} has {n_rows} rows")
    return {
        "catalogue_csv": str(csv_path),
        "n_measured": len(todo),
        "n_rows": n_rows,
        "n_skipped": len(plan) - len(todo),
        "measured": {net_key(w.space, w.law, w.net_id): list(w.targets) for w in todo},
        "reasons": dict(Counter(w.reason for w in todo)),
        "order": order,
        "wall_s": elapsed,
        "n_joined": joined,
    }


def _measure(todo: list[Work], out_dir: Path, request: Request, progress: bool) -> list[str]:
    """`measure_works` with a progress bar when asked."""
    from rich.progress import Progress

    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task("characterize", total=len(todo))
        return measure_works(todo, out_dir, request, lambda n: bar.advance(task, n))
