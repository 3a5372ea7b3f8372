# SPDX-License-Identifier: Apache-2.0
"""Characterize sampled networks without training: size, MACs, host latency, platform costs.

One JSON record per network (`records/<space>_<law>_<id>.json`) holds everything measured for
it, with the inputs and fingerprints of each target's measurement (`requests.py`);
`catalogue.csv` is the flat table of all records of a folder, one row per network. Records are
written atomically once their group of networks is measured (`measure.py`), so an interrupted
run loses at most one group and a re-run skips what is there with the same inputs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from odimo.characterization.timing import LatencyStats
from odimo.errors import OdimoError
from odimo.hw.geometry import GeometryTable, LayerGeometry, record_geometry
from odimo.hw.platform import Platform
from odimo.io import atomic_write_text, write_records_csv
from odimo.models.build import ModelSpec, build_model, make_options, searchable_names
from odimo.nn.baselines import baseline_mapping

FORMAT = "odimo.catalogue/2"
#: Record formats this version reads (a /1 record carries no inputs: it is measured again).
READ_FORMATS = ("odimo.catalogue/1", FORMAT)
#: Host "platforms" timed with the latency harness (name -> torch device).
HOST_DEVICES = {"host_cpu": "cpu", "host_gpu": "cuda"}
#: Leading columns of catalogue.csv; platform columns follow in record order.
ID_COLUMNS = ("key", "space", "law", "id", "input_size", "params", "macs", "layers")


@dataclass(frozen=True)
class TimingOptions:
    """Latency harness settings of a characterization (see conf/characterize.yaml)."""

    batch: int = 1
    repeats: int = 30  # rounds: each network is timed once per round, median over rounds
    warmup: int = 5
    threads: int = 1
    group: int = 64  # networks timed against each other (records written after each group)


def net_key(space: str, law: str, net_id: int) -> str:
    """The catalogue's name of a network: `<space>/<law>/<id>`."""
    return f"{space}/{law}/{net_id}"


def record_path(out_dir: Path, space: str, law: str, net_id: int) -> Path:
    return out_dir / "records" / f"{space}_{law}_{net_id}.json"


def macs(geometry: Sequence[LayerGeometry]) -> int:
    """Multiply-accumulates of one inference: Σ C_in/g · C_out · K_x · K_y · O_x · O_y."""
    return int(sum(g.c_in // g.groups * g.c_out * g.k_x * g.k_y * g.o_x * g.o_y for g in geometry))


def platform_costs(
    model: torch.nn.Module,
    geometry: list[LayerGeometry],
    platform: Platform,
    mappings: Iterable[str],
) -> dict[str, float]:
    """`<platform>_<mapping>_ms` and `_uj` of each named mapping (the cost model, exact)."""
    table = GeometryTable(geometry, dtype=torch.float64)
    names = [g.name for g in geometry]
    out: dict[str, float] = {}
    for mapping_name in mappings:
        mapping = baseline_mapping(mapping_name, geometry, platform, searchable_names(model))
        cost = platform.evaluate(mapping.counts_tensor(names).double(), table, soft=False)
        prefix = f"{platform.name}_{mapping_name}"
        out[f"{prefix}_ms"] = float(platform.cycles_to_ms(cost.total_latency_cycles))
        out[f"{prefix}_uj"] = float(platform.mw_cycles_to_uj(cost.total_energy_mw_cycles))
    return out


def host_columns(name: str, stats: LatencyStats) -> dict[str, float]:
    """`<name>_ms` (median over the rounds) plus mean/std/p95 and the load during the timing."""
    return {
        f"{name}_ms": stats.median_ms,
        f"{name}_mean_ms": stats.mean_ms,
        f"{name}_std_ms": stats.std_ms,
        f"{name}_p95_ms": stats.p95_ms,
        f"{name}_load": stats.load_1min,
        f"{name}_busy_others": stats.busy_others,
    }


def build_network(
    space: str, law: str, net_id: int, input_size: tuple[int, int, int], num_classes: int
) -> tuple[torch.nn.Module, list[LayerGeometry], dict[str, Any]]:
    """The float network, its geometry and its record without costs (identity, size, MACs)."""
    spec = ModelSpec(
        "sampled", input_size, num_classes, make_options({"space": space, "law": law, "id": net_id})
    )
    model = build_model(spec, "float")
    geometry = record_geometry(model, input_size)
    record = {
        "format": FORMAT,
        "key": net_key(space, law, net_id),
        "space": space,
        "law": law,
        "id": net_id,
        "arch": model.arch,
        "input_size": list(input_size),
        "num_classes": num_classes,
        "params": sum(p.numel() for p in model.parameters()),
        "macs": macs(geometry),
        "layers": len(geometry),
        "costs": {},
        "columns": {},
    }
    return model, geometry, record


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename (never a half-written file)."""
    atomic_write_text(path, json.dumps(data, indent=1, allow_nan=True) + "\n")


def load_record(path: Path) -> dict[str, Any]:
    """One record; OdimoError naming the file if it is not a catalogue record."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise OdimoError(f"{path} is not a readable catalogue record ({err})") from None
    if not isinstance(data, dict) or data.get("format") not in READ_FORMATS:
        raise OdimoError(f"{path} is not an odimo catalogue record (format {FORMAT!r})")
    return data


def flat_row(record: dict[str, Any]) -> dict[str, Any]:
    """A catalogue.csv row: identity columns, then every cost and any joined result."""
    row = {col: record.get(col) for col in ID_COLUMNS}
    if isinstance(row["input_size"], list):  # one cell: C x H x W
        row["input_size"] = "x".join(str(v) for v in row["input_size"])
    row.update(record.get("costs", {}))
    row.update(record.get("results", {}))
    return row


def write_catalogue_csv(out_dir: Path) -> tuple[Path, int]:
    """Rebuild `catalogue.csv` from every record under `out_dir/records` (sorted by key)."""
    records = [load_record(p) for p in sorted((out_dir / "records").glob("*.json"))]
    records.sort(key=lambda r: (r["space"], r["law"], int(r["id"])))
    rows = [flat_row(r) for r in records]
    columns = list(ID_COLUMNS)
    for row in rows:
        columns += [c for c in row if c not in columns]
    path = write_records_csv(out_dir / "catalogue.csv", columns, rows, cell=_cell)
    return path, len(rows)


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
