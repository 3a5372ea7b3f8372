# SPDX-License-Identifier: Apache-2.0
"""A platform of N units whose cycles are linear in the MACs of their channels (no code needed).

The units are declared in the platform YAML (`units:` name, role, weight format, operator,
grouped support) and their numbers in `constants` (one list entry per unit). Per unit u, for
c output channels of a layer:

    cycles_u = [c>=1]·setup_u + ⌈c/lanes_u⌉·(C_in/g·K_x·K_y·O_x·O_y)·mac_cycles_u

(a ``depthwise3x3`` unit has a fan-in of K_x·K_y). Latency is the max of the units (smooth
during the search), energy Σ_u power_u·cycles_u. It is the smallest honest cost model: a way to
describe a new chip from a few measurements, and the 3-unit platform the tests search on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from odimo.hw.geometry import GeometryTable
from odimo.hw.platform import ComputeUnit, Platform, soft_max_cycles
from odimo.ste import ceil_div_ste, gate_ste


@dataclass(frozen=True)
class LinearConstants:
    """Per-unit numbers (lists in unit order) and the clock."""

    freq_hz: float = 100e6  # clock (Hz)
    setup_cycles: tuple[float, ...] = ()  # fixed cycles of a unit that runs any channel
    lanes: tuple[int, ...] = ()  # output channels a unit computes together
    mac_cycles: tuple[float, ...] = ()  # cycles per MAC of one lane group
    power_mw: tuple[float, ...] = ()  # power of a busy unit (mW)

    def __post_init__(self) -> None:
        n = len(self.lanes)
        for name in ("setup_cycles", "lanes", "mac_cycles", "power_mw"):
            value = tuple(getattr(self, name))
            object.__setattr__(self, name, value)
            if len(value) != n or n < 2:
                raise ValueError(f"constant {name} needs one value per unit (>= 2 units)")
            if any(not v >= 0 for v in value) or (name == "lanes" and min(value) < 1):
                raise ValueError(f"constant {name} must be >= 0 (lanes >= 1), got {value}")
        if not self.freq_hz > 0:
            raise ValueError("freq_hz must be > 0")


class LinearPlatform(Platform):
    """N units with linear cycle costs; see the module doc.

    Args:
        units: one mapping per unit (`name`, `weight_format`, `role`, `operator`,
            `supports_grouped`), in α row order.
        constants: per-unit numbers, same order.
        name: the platform's name.
        smooth_cycles: temperature of the smooth max used during the search.
        activation_bits: bits of the activation quantizer.
    """

    constants_type = LinearConstants

    def __init__(
        self,
        units: list[dict],
        constants: LinearConstants,
        name: str = "linear",
        smooth_cycles: float = 1.0,
        activation_bits: int = 7,
        cheap_unit: str | None = None,
    ):
        self.units = tuple(ComputeUnit(**dict(u)) for u in units)
        if len(self.units) != len(constants.lanes):
            raise ValueError(f"{len(self.units)} units but constants for {len(constants.lanes)}")
        self.constants = constants
        self.name = name
        self.smooth_cycles = float(smooth_cycles)
        self.activation_bits = int(activation_bits)
        self.cheap_unit = cheap_unit
        self.check_roles()

    def options(self) -> dict:
        return {
            "units": [
                {
                    "name": u.name,
                    "weight_format": u.weight_format,
                    "role": u.role,
                    "operator": u.operator,
                    "supports_grouped": u.supports_grouped,
                }
                for u in self.units
            ],
            "smooth_cycles": self.smooth_cycles,
            "activation_bits": self.activation_bits,
        }

    def unit_cycles(self, counts: Tensor, geom: GeometryTable) -> Tensor:
        c = self.constants
        spatial = geom.o_x * geom.o_y * geom.k_x * geom.k_y
        cols = []
        for u, unit in enumerate(self.units):
            fan = spatial if unit.operator == "depthwise3x3" else spatial * geom.c_in / geom.groups
            n = counts[:, u]
            cycles = gate_ste(n) * c.setup_cycles[u]
            cycles = cycles + ceil_div_ste(n, c.lanes[u]) * fan * c.mac_cycles[u]
            cols.append(cycles)
        return torch.stack(cols, dim=-1)

    def latency_cycles(self, unit_cycles: Tensor, soft: bool) -> Tensor:
        if soft:
            return soft_max_cycles(unit_cycles, self.smooth_cycles)
        return unit_cycles.amax(-1)

    def energy_mw_cycles(self, unit_cycles: Tensor, soft: bool) -> Tensor:
        power = torch.tensor(self.constants.power_mw, dtype=unit_cycles.dtype)
        return (unit_cycles * power.to(unit_cycles.device)).sum(-1)
