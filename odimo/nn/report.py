# SPDX-License-Identifier: Apache-2.0
"""The cost report of a network under a mapping: per-layer table and totals (JSON-ready)."""

from __future__ import annotations

import torch

from odimo.hw.geometry import GeometryTable, LayerGeometry
from odimo.hw.platform import Platform
from odimo.nn.mapping import Mapping


def cost_report(
    geometry: list[LayerGeometry],
    mapping: Mapping,
    platform: Platform,
    *,
    model: str,
    dataset: str,
    input_size: list[int] | tuple[int, ...],
    mapping_label: str,
) -> dict:
    """Hard costs of every layer (execution order) and of the network, as the report's JSON.

    Keys per layer: geometry, `ch_<unit>`, `cycles_<unit>`, `latency_cycles`,
    `energy_mw_cycles`; totals `latency_cycles`, `latency_ms`, `energy_mw_cycles`, `energy_uj`.
    """
    mapping.check(geometry, platform)
    names = [g.name for g in geometry]
    counts = mapping.counts_tensor(names)
    cost = platform.evaluate(counts, GeometryTable(geometry, dtype=torch.float64), soft=False)
    layers = []
    for i, g in enumerate(geometry):
        row = {k: v for k, v in g.as_dict().items()}
        for u, unit in enumerate(platform.unit_names):
            row[f"ch_{unit}"] = int(counts[i, u])
        for u, unit in enumerate(platform.unit_names):
            row[f"cycles_{unit}"] = float(cost.unit_cycles[i, u])
        row["latency_cycles"] = float(cost.latency_cycles[i])
        row["energy_mw_cycles"] = float(cost.energy_mw_cycles[i])
        layers.append(row)
    latency = float(cost.total_latency_cycles)
    energy = float(cost.total_energy_mw_cycles)
    return {
        "model": model,
        "dataset": dataset,
        "input_size": [int(v) for v in input_size],
        "mapping": mapping_label,
        "layers": layers,
        "latency_cycles": latency,
        "latency_ms": float(platform.cycles_to_ms(latency)),
        "energy_mw_cycles": energy,
        "energy_uj": float(platform.mw_cycles_to_uj(energy)),
    }


def format_report(report: dict, unit_names: tuple[str, ...]) -> str:
    """The report as a fixed-width text table (one row per layer, then totals)."""
    head = f"{'layer':34s} {'geometry':>24s} " + " ".join(
        f"{'ch_' + u[:3]:>7s}" for u in unit_names
    )
    head += " " + " ".join(f"{'cyc_' + u[:3]:>11s}" for u in unit_names) + f" {'latency':>11s}"
    lines = [head, "-" * len(head)]
    for r in report["layers"]:
        geo = f"{r['c_in']}->{r['c_out']} {r['k_x']}/{r['stride']}/{r['groups']}"
        geo += f" @{r['o_x']}x{r['o_y']}"
        line = f"{r['name'][:34]:34s} {geo:>24s} "
        line += " ".join(f"{r['ch_' + u]:7d}" for u in unit_names) + " "
        line += " ".join(f"{r['cycles_' + u]:11.1f}" for u in unit_names)
        lines.append(line + f" {r['latency_cycles']:11.1f}")
    lines.append("-" * len(head))
    lines.append(
        f"{report['model']} on {report['dataset']} {report['input_size']}, mapping "
        f"{report['mapping']}: latency {report['latency_cycles']:.2f} cycles = "
        f"{report['latency_ms']:.4f} ms; energy {report['energy_mw_cycles']:.2f} mW·cycles = "
        f"{report['energy_uj']:.4f} µJ"
    )
    return "\n".join(lines)
