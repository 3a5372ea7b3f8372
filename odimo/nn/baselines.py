# SPDX-License-Identifier: Apache-2.0
"""The manual mapping heuristics the search is compared with, computed from the cost model.

Layers whose mapping the architecture fixes (not searchable, e.g. MobileNet's depthwise convs)
stay on the first unit that can run them in every baseline; the others follow the rule:

- `all_digital`: every free layer on the digital unit;
- `all_analog`: every layer the analog unit can run on it, fixed ones included (as the
  reference's all-ternary network: only MobileNet's depthwise convs stay digital);
- `io_digital`: first and last layer of the network digital, the other free layers analog;
- `min_latency`: each whole free layer on its faster unit (ties: digital);
- `min_latency_max8`: min_latency, then in each layer on the analog unit as many channels moved
  to the digital unit as fit without raising that layer's latency.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from odimo.errors import ConfigError
from odimo.hw.geometry import GeometryTable, LayerGeometry
from odimo.hw.platform import CostBreakdown, Platform
from odimo.nn.mapping import Mapping


def _whole_layer_cycles(geometry: list[LayerGeometry], platform: Platform) -> torch.Tensor:
    """[L, U] cycles of each layer run entirely on each unit (inf where the unit cannot)."""
    table = GeometryTable(geometry, dtype=torch.float64)
    out = torch.empty(len(geometry), platform.num_units, dtype=torch.float64)
    for u in range(platform.num_units):
        counts = torch.zeros(len(geometry), platform.num_units, dtype=torch.float64)
        counts[:, u] = table.c_out
        out[:, u] = platform.unit_cycles(counts, table)[:, u]
    allowed = torch.tensor([platform.allowed_units(g) for g in geometry])
    return out.masked_fill(~allowed, float("inf"))


def move_costs(
    g: LayerGeometry, platform: Platform, counts: torch.Tensor, source: int, dest: int
) -> CostBreakdown:
    """Hard costs of one layer after moving k = 0, 1, ..., counts[source] of its channels
    from unit `source` to unit `dest` (row k of every field; `counts` [U] are its channels per
    unit now). Shared by `free_moves` and the target projection (`odimo.nn.projection`)."""
    n = int(counts[source])
    k = torch.arange(n + 1, dtype=torch.float64)
    rows = counts.to(torch.float64).repeat(n + 1, 1)
    rows[:, dest] += k
    rows[:, source] -= k
    return platform.evaluate(rows, GeometryTable([g] * (n + 1), dtype=torch.float64), soft=False)


def free_moves(
    g: LayerGeometry,
    platform: Platform,
    counts: torch.Tensor,
    source: int,
    dest: int,
    objective: str = "latency",
) -> int:
    """Most channels of a layer that can move from unit `source` to `dest` at no extra cost.

    `counts` [U] are the layer's channels per unit now; `objective` is "latency" or "energy".
    Shared by `min_latency_max8` and the search's slack filling (`odimo.nn.slack`).
    """
    moved = move_costs(g, platform, counts, source, dest)
    cost = moved.latency_cycles if objective == "latency" else moved.energy_mw_cycles
    fits = torch.nonzero(cost <= cost[0] * (1 + 1e-12)).flatten()
    return int(fits.max())


def baseline_assignments(
    name: str,
    geometry: list[LayerGeometry],
    platform: Platform,
    searchable: Iterable[str] | None = None,
) -> dict[str, list[int]]:
    """Per-channel unit indices of every layer under the named baseline."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r} (choose from: {', '.join(BASELINES)})")
    d, a = platform.precise_unit_index(), platform.cheap_unit_index()
    free = set(searchable) if searchable is not None else {g.name for g in geometry}
    cycles = _whole_layer_cycles(geometry, platform)
    out: dict[str, list[int]] = {}
    for i, g in enumerate(geometry):
        allowed = platform.allowed_units(g)
        fixed_unit = allowed.index(True)
        if name == "all_analog" and allowed[a]:
            out[g.name] = [a] * g.c_out
            continue
        if g.name not in free:
            out[g.name] = [fixed_unit] * g.c_out
            continue
        analog_ok = allowed[a]
        if name == "all_digital":
            unit = d
        elif name == "all_analog":
            unit = a if analog_ok else fixed_unit
        elif name == "io_digital":
            unit = d if i in (0, len(geometry) - 1) or not analog_ok else a
        else:  # min_latency and min_latency_max8
            unit = a if cycles[i, a] < cycles[i, d] else d
        if name == "min_latency_max8" and unit == a:
            counts = torch.zeros(platform.num_units, dtype=torch.float64)
            counts[a] = g.c_out
            k = free_moves(g, platform, counts, a, d)
            out[g.name] = [d] * k + [a] * (g.c_out - k)
        else:
            out[g.name] = [unit] * g.c_out
    return out


def baseline_mapping(
    name: str,
    geometry: list[LayerGeometry],
    platform: Platform,
    searchable: Iterable[str] | None = None,
) -> Mapping:
    """The named baseline as a `Mapping` (layers in execution order)."""
    layers = baseline_assignments(name, geometry, platform, searchable)
    return Mapping(platform.name, platform.unit_names, {k: tuple(v) for k, v in layers.items()})


BASELINES: dict[str, Callable] = {
    n: baseline_mapping
    for n in ("all_digital", "all_analog", "io_digital", "min_latency", "min_latency_max8")
}
