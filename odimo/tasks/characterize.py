# SPDX-License-Identifier: Apache-2.0
"""The characterize task: measure sampled networks before training (IoTnets "calibration").

For every id of the range, in every space and law asked for: parameters, MACs, host latency
(the harness) and the cost of chosen mappings on each cost-model platform. One JSON record per
network under `output_dir/records/`, `catalogue.csv` over all records of the folder, and
`host.json` (CPU model, threads, torch version). Re-running skips the networks already there.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from odimo.characterization.candidates import join_runs
from odimo.characterization.catalogue import (
    HOST_DEVICES,
    TimingOptions,
    characterize,
    load_record,
    record_path,
    write_catalogue_csv,
    write_json_atomic,
)
from odimo.characterization.timing import host_info
from odimo.errors import ConfigError
from odimo.hw import load_platform
from odimo.nn.baselines import BASELINES
from odimo.spaces import get_law

log = logging.getLogger(__name__)


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
    unknown = [m for m in mappings if m not in BASELINES]
    if unknown:
        raise ConfigError(f"unknown mapping {unknown[0]!r} (choose from: {', '.join(BASELINES)})")
    targets: dict[str, Any] = {}
    for name in names:
        if name in HOST_DEVICES:
            if HOST_DEVICES[name] == "cuda" and not torch.cuda.is_available():
                raise ConfigError(f"platform {name} needs a CUDA device; none is available")
            targets[name] = None
        else:
            targets[name] = load_platform(name)
    return targets


def _plan(cfg: DictConfig) -> list[tuple[str, str, int]]:
    """(space, law, id) of every network asked for; unknown spaces or laws fail first."""
    spaces, laws = _names(cfg.space, "space"), _names(cfg.law, "law")
    ids = parse_ids(cfg.ids)
    for space in spaces:
        for law in laws:
            get_law(space, law)
    return [(s, law, i) for s in spaces for law in laws for i in ids]


def _measured(path: Path) -> set[str]:
    """The targets a network's record was measured on (none without a record)."""
    return set(load_record(path).get("targets", [])) if path.is_file() else set()


def run(cfg: DictConfig) -> dict[str, Any]:
    """Characterize every network of the plan that is not in `output_dir` yet."""
    plan = _plan(cfg)
    mappings = _names(cfg.mappings, "mappings")
    targets = resolve_targets(_names(cfg.platforms, "platforms"), mappings)
    timing = TimingOptions(**OmegaConf.to_container(cfg.timing, resolve=True))
    input_size = tuple(int(v) for v in cfg.input_size)
    if len(input_size) != 3:
        raise ConfigError(f"input_size must be [C, H, W], got {list(cfg.input_size)}")
    out_dir = Path(str(cfg.output_dir)).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "host.json", host_info(timing.threads))
    todo = [p for p in plan if not set(targets) <= _measured(record_path(out_dir, *p))]
    print(
        f"{len(plan)} networks asked, {len(plan) - len(todo)} already measured, {len(todo)} to go"
    )
    start = time.perf_counter()
    _measure_all(todo, out_dir, targets, mappings, timing, input_size, cfg)
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
        "wall_s": elapsed,
        "n_joined": joined,
    }


def _measure_all(todo, out_dir, targets, mappings, timing, input_size, cfg) -> None:
    """Measure and write one record per network, with a progress bar when asked."""
    from rich.progress import Progress

    with Progress(disable=not cfg.progress, transient=False) as bar:
        task = bar.add_task("characterize", total=len(todo))
        for space, law, net_id in todo:
            torch.manual_seed(int(cfg.seed))
            path = record_path(out_dir, space, law, net_id)
            previous = load_record(path) if path.is_file() else None
            done = _measured(path)
            wanted = {k: v for k, v in targets.items() if k not in done}
            record = characterize(
                space, law, net_id, input_size, int(cfg.num_classes), wanted, mappings, timing
            )
            if previous is not None:
                record["costs"] = {**previous["costs"], **record["costs"]}
                record["targets"] = sorted(done | set(wanted))
                record["results"] = previous.get("results", {})
            write_json_atomic(path, record)
            bar.advance(task)
    log.debug("wrote %d records", len(todo))
