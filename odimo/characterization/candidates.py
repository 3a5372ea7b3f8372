# SPDX-License-Identifier: Apache-2.0
"""Train only what matters: the sweep commands of selected catalogue networks, and the join of
their finished runs' accuracies back into the catalogue records.

`train_commands` groups the selected keys (`<space>/<law>/<id>`) by space and law into one
Hydra multirun per group (`model.id=3,17,40`). `join_runs` reads every finished run under the
given folders (`config.yaml` + `metrics.json` + `DONE`) and stores its accuracies in the
record of its network as `<variant>_val_acc` / `<variant>_test_acc`, where the variant is
`float` for a warm-up-only run and the baseline name (e.g. `min_latency`) for a baseline run;
any run with a float warm-up also gives `float_val_acc` (the float network's accuracy, which a
host CPU runs).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from odimo.characterization.catalogue import load_record, record_path, write_json_atomic
from odimo.errors import OdimoError
from odimo.spaces import SPACES


def parse_key(key: str) -> tuple[str, str, int] | None:
    """(space, law, id) of a catalogue key, or None if it is not one."""
    parts = str(key).split("/")
    if len(parts) != 3 or parts[0] not in SPACES or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


def train_commands(keys: Iterable[str], overrides: Sequence[str]) -> list[str]:
    """One `python train.py -m model=sampled ...` per (space, law) of the selected keys."""
    groups: dict[tuple[str, str], list[int]] = {}
    for key in keys:
        parsed = parse_key(key)
        if parsed is None:
            raise OdimoError(f"{key!r} is not a sampled network key <space>/<law>/<id>")
        groups.setdefault(parsed[:2], [])
        if parsed[2] not in groups[parsed[:2]]:
            groups[parsed[:2]].append(parsed[2])
    return [
        "python train.py -m model=sampled "
        f"model.space={space} model.law={law} model.id={','.join(map(str, sorted(ids)))} "
        + " ".join(overrides)
        for (space, law), ids in sorted(groups.items())
    ]


def _finished_runs(root: Path) -> Iterable[tuple[dict, dict]]:
    """(config, metrics) of every finished run below `root`; the float warm-up's validation
    accuracy (`warmup.json`) joins the metrics as `warmup/val_acc`."""
    for metrics_path in sorted(root.rglob("metrics.json")):
        run_dir = metrics_path.parent
        if not (run_dir / "DONE").is_file() or not (run_dir / "config.yaml").is_file():
            continue
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        warm = run_dir / "warmup.json"
        if warm.is_file():
            metrics["warmup/val_acc"] = json.loads(warm.read_text(encoding="utf-8")).get("val_acc")
        yield config, metrics


def _variant(metrics: dict[str, Any]) -> str:
    return "float" if metrics.get("kind") == "float" else str(metrics.get("baseline") or "search")


def join_runs(out_dir: Path, roots: Sequence[Path]) -> int:
    """Store the accuracies of finished sampled runs in their records; return runs joined."""
    joined = 0
    for root in roots:
        if not root.is_dir():
            raise OdimoError(f"join_runs: {root} is not a folder of runs")
        for config, metrics in _finished_runs(root):
            model = config.get("model", {})
            if model.get("name") != "sampled":
                continue
            path = record_path(out_dir, model["space"], model["law"], int(model["id"]))
            if not path.is_file():
                continue
            record = load_record(path)
            variant = _variant(metrics)
            results = record.setdefault("results", {})
            for split in ("val", "test"):
                for key in (
                    f"final/{split}/acc_hard",
                    f"final/{split}/acc_float",
                    f"final/{split}/acc",
                ):
                    if key in metrics:
                        results[f"{variant}_{split}_acc"] = float(metrics[key])
                        break
            if metrics.get("warmup/val_acc") is not None:
                results["float_val_acc"] = float(metrics["warmup/val_acc"])
            results[f"{variant}_dataset"] = metrics.get("dataset")
            write_json_atomic(path, record)
            joined += 1
    return joined
