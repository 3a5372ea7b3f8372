# SPDX-License-Identifier: Apache-2.0
"""What a multi-accelerator platform is to odimo: compute units plus a vectorised cost model.

A platform module (e.g. `odimo.hw.diana`) subclasses `Platform`. Layers never name a unit: they
ask the platform how many units there are, which weight format each uses and which convs each
supports. Adding a unit or a chip means writing one platform module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from odimo.hw.analog import AnalogArithmetic
from odimo.hw.geometry import GeometryTable, LayerGeometry


@dataclass(frozen=True)
class ComputeUnit:
    """One accelerator of a platform.

    Attributes:
        name: unit name used in configs, mappings and reports (e.g. "digital").
        weight_format: name of the weight quantizer (see `odimo.quant.WEIGHT_QUANTIZERS`).
        supports_grouped: whether the unit can run grouped/depthwise convs.
    """

    name: str
    weight_format: str
    supports_grouped: bool = True


@dataclass(frozen=True)
class CostBreakdown:
    """Costs of every layer of a network under one mapping (tensors of shape [L] or [L, U])."""

    counts: Tensor  # [L, U] channels per unit (soft or hard)
    unit_cycles: Tensor  # [L, U] busy cycles of each unit
    latency_cycles: Tensor  # [L]
    energy_mw_cycles: Tensor  # [L]

    @property
    def total_latency_cycles(self) -> Tensor:
        return self.latency_cycles.sum()

    @property
    def total_energy_mw_cycles(self) -> Tensor:
        return self.energy_mw_cycles.sum()


class Platform(ABC):
    """A chip whose compute units run disjoint output channels of a layer in parallel."""

    name: str
    units: tuple[ComputeUnit, ...]
    freq_hz: float
    #: Name of the cheap, low-precision unit (DIANA: "analog"); set from the platform's config.
    cheap_unit: str
    #: The cheap unit's analog read-out (ADC and noise); None = exact accumulation.
    analog: AnalogArithmetic | None = None

    @property
    def num_units(self) -> int:
        return len(self.units)

    @property
    def unit_names(self) -> tuple[str, ...]:
        return tuple(u.name for u in self.units)

    def unit_index(self, name: str) -> int:
        """Index of a unit by name (the α row and the mapping code of that unit)."""
        try:
            return self.unit_names.index(name)
        except ValueError:
            raise KeyError(
                f"platform {self.name} has no unit {name!r} ({self.unit_names})"
            ) from None

    def cheap_unit_index(self) -> int:
        """Index of the cheap, low-precision unit: generic code asks this, never assumes 1."""
        return self.unit_index(self.cheap_unit)

    def precise_unit_index(self) -> int:
        """Index of the unit that runs every layer at full precision: the first one that
        supports grouped convs and is not the cheap unit (DIANA: digital)."""
        cheap = self.cheap_unit_index()
        for i, unit in enumerate(self.units):
            if i != cheap and unit.supports_grouped:
                return i
        return next(i for i in range(self.num_units) if i != cheap)

    def allowed_units(self, geometry: LayerGeometry | None = None, groups: int = 1) -> list[bool]:
        """Which units may run a layer (grouped convs only on units that support them)."""
        g = geometry.groups if geometry is not None else groups
        return [u.supports_grouped or g == 1 for u in self.units]

    @abstractmethod
    def unit_cycles(self, counts: Tensor, geom: GeometryTable) -> Tensor:
        """Busy cycles [L, U] of each unit given channel counts [L, U] (soft or whole)."""

    @abstractmethod
    def latency_cycles(self, unit_cycles: Tensor, soft: bool) -> Tensor:
        """Per-layer latency [L]: smooth during the search, exact when not soft."""

    @abstractmethod
    def energy_mw_cycles(self, unit_cycles: Tensor, soft: bool) -> Tensor:
        """Per-layer energy [L] in mW·cycles."""

    def busy_cycles(self, unit_cycles: Tensor) -> Tensor:
        """Per-layer total busy cycles of all units [L] (the `power-naive` proxy)."""
        return unit_cycles.sum(-1)

    def evaluate(self, counts: Tensor, geom: GeometryTable, soft: bool = False) -> CostBreakdown:
        """All costs of a network in one vectorised computation."""
        cycles = self.unit_cycles(counts, geom)
        return CostBreakdown(
            counts=counts,
            unit_cycles=cycles,
            latency_cycles=self.latency_cycles(cycles, soft),
            energy_mw_cycles=self.energy_mw_cycles(cycles, soft),
        )

    def cycles_to_ms(self, cycles: Tensor | float) -> Tensor | float:
        """Cycles at the platform clock to milliseconds."""
        return cycles / self.freq_hz * 1e3

    def mw_cycles_to_uj(self, mw_cycles: Tensor | float) -> Tensor | float:
        """mW·cycles to µJ: mW·cycles / f = mJ, times 1e3."""
        return mw_cycles / self.freq_hz * 1e3


def counts_from_assignment(assignments: list[Tensor], num_units: int) -> Tensor:
    """Hard channel counts [L, U] from per-layer unit indices ([C_out] longs per layer)."""
    rows = [torch.bincount(a.long(), minlength=num_units)[:num_units] for a in assignments]
    return torch.stack(rows).to(torch.float32)
