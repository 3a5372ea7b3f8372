# SPDX-License-Identifier: Apache-2.0
"""The manual mapping heuristics the search is compared with, computed from the cost model.

A platform names its baselines (`Platform.baselines()`: name -> rule and arguments); the rules
are generic, for any number of units. Layers whose mapping the architecture fixes (not
searchable) stay on `platform.fixed_unit_index` in every rule but ``all_with_fixed``. Rules:

- ``all <unit>``: every free layer on `unit` (where it cannot run: the fixed-layer unit);
- ``all_with_fixed <unit>``: the same, fixed layers included where `unit` can run them
  (DIANA's `all_analog`, as the reference's all-ternary network);
- ``io <edge> <middle>``: first and last layer on `edge`, the other free layers on `middle`
  (DIANA's `io_digital`);
- ``fastest`` / ``least_energy``: each whole free layer on the unit with the least latency /
  energy (ties: the precise unit, then the lower index);
- ``fastest_filled``: ``fastest``, then in each layer not on the precise unit as many channels
  moved to the precise unit as fit without raising that layer's latency (`min_latency_max8`);
- ``even <a> <b>``: every free layer that both units can run split in half (the first half of
  the channels on `a`), others on the fixed-layer unit.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from odimo.errors import ConfigError
from odimo.hw.geometry import GeometryTable, LayerGeometry
from odimo.hw.platform import CostBreakdown, Platform
from odimo.nn.mapping import Mapping


def _whole_layer_costs(geometry: list[LayerGeometry], platform: Platform) -> CostBreakdown:
    """Costs [L, U] of each layer run entirely on each unit (inf where the unit cannot)."""
    table = GeometryTable(geometry, dtype=torch.float64)
    n, units = len(geometry), platform.num_units
    latency = torch.empty(n, units, dtype=torch.float64)
    energy = torch.empty(n, units, dtype=torch.float64)
    for u in range(units):
        counts = torch.zeros(n, units, dtype=torch.float64)
        counts[:, u] = table.c_out
        cost = platform.evaluate(counts, table, soft=False)
        latency[:, u], energy[:, u] = cost.latency_cycles, cost.energy_mw_cycles
    allowed = torch.tensor([platform.allowed_units(g) for g in geometry])
    inf = float("inf")
    return CostBreakdown(
        counts=table.c_out,
        unit_cycles=latency.masked_fill(~allowed, inf),
        latency_cycles=latency.masked_fill(~allowed, inf),
        energy_mw_cycles=energy.masked_fill(~allowed, inf),
    )


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


def _best_unit(costs: torch.Tensor, precise: int) -> int:
    """The unit of least cost; ties go to the precise unit, then to the lower index."""
    best = float(costs.min())
    return precise if float(costs[precise]) <= best else int(torch.argmin(costs))


def _layer_rule(rule: tuple, i: int, g: LayerGeometry, platform: Platform, whole) -> list[int]:
    """Per-channel units of free layer `i` under `rule` (see the module doc)."""
    kind, args = rule[0], rule[1:]
    allowed = platform.allowed_units(g)
    fixed = platform.fixed_unit_index(g)
    precise = platform.precise_unit_index()
    if kind in ("all", "all_with_fixed"):
        unit = platform.unit_index(args[0])
        return [unit if allowed[unit] else fixed] * g.c_out
    if kind == "io":
        edge, middle = (platform.unit_index(a) for a in args)
        unit = edge if i in (0, whole.latency_cycles.shape[0] - 1) else middle
        return [unit if allowed[unit] else fixed] * g.c_out
    if kind == "even":
        a, b = (platform.unit_index(x) for x in args)
        if not (allowed[a] and allowed[b]):
            return [fixed] * g.c_out
        half = g.c_out // 2
        return [a] * half + [b] * (g.c_out - half)
    if kind in ("fastest", "fastest_filled", "least_energy"):
        costs = whole.energy_mw_cycles[i] if kind == "least_energy" else whole.latency_cycles[i]
        unit = _best_unit(costs, precise)
        if kind == "fastest_filled" and unit != precise and allowed[precise]:
            counts = torch.zeros(platform.num_units, dtype=torch.float64)
            counts[unit] = g.c_out
            k = free_moves(g, platform, counts, unit, precise)
            return [precise] * k + [unit] * (g.c_out - k)
        return [unit] * g.c_out
    raise ConfigError(f"platform {platform.name}: unknown baseline rule {kind!r}")


def baseline_names(platform: Platform) -> list[str]:
    """The baselines a platform offers (for error messages and summaries)."""
    return list(platform.baselines())


def baseline_assignments(
    name: str,
    geometry: list[LayerGeometry],
    platform: Platform,
    searchable: Iterable[str] | None = None,
) -> dict[str, list[int]]:
    """Per-channel unit indices of every layer under the named baseline."""
    rules = platform.baselines()
    if name not in rules:
        raise ConfigError(
            f"unknown baseline {name!r} for platform {platform.name} "
            f"(choose from: {', '.join(rules)})"
        )
    rule = rules[name]
    free = set(searchable) if searchable is not None else {g.name for g in geometry}
    whole = _whole_layer_costs(geometry, platform)
    out: dict[str, list[int]] = {}
    for i, g in enumerate(geometry):
        if g.name in free:
            out[g.name] = _layer_rule(rule, i, g, platform, whole)
        elif (
            rule[0] == "all_with_fixed" and platform.allowed_units(g)[platform.unit_index(rule[1])]
        ):
            out[g.name] = [platform.unit_index(rule[1])] * g.c_out
        else:
            out[g.name] = [platform.fixed_unit_index(g)] * g.c_out
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
