# SPDX-License-Identifier: Apache-2.0
"""What a multi-accelerator platform is to odimo: compute units plus a vectorised cost model.

A platform module (e.g. `odimo.hw.diana`, `odimo.hw.darkside`) subclasses `Platform`. Layers
never name a unit: they ask the platform how many units there are, which weight format and
operator each uses, which convs each may run, which unit plays which role, and what the
baselines and metric names are. Adding a unit or a chip means writing one platform module.

Roles (declared per unit, never inferred from the unit's index):
- ``precise``: runs every layer; fixed (non-searchable) layers and argmax ties go to it.
- ``cheap``: the low-cost unit; slack filling and the target projection trade channels
  between it and the precise unit.
Any other role (e.g. ``aux``) is a further unit that the search may use.

Operators: ``conv`` runs the layer's own convolution (grouped ones only with
`supports_grouped`); ``depthwise3x3`` runs, per output channel c, a 3x3 filter on input
channel c only: a true 3x3 depthwise layer, or the depthwise branch of an operator-choice
layer (`LayerGeometry.operator_choice`, Darkside's searchable slots).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from odimo.errors import ConfigError
from odimo.hw.analog import AnalogArithmetic
from odimo.hw.geometry import GeometryTable, LayerGeometry

ROLES = ("precise", "cheap")
OPERATORS = ("conv", "depthwise3x3")


@dataclass(frozen=True)
class ComputeUnit:
    """One accelerator of a platform.

    Attributes:
        name: unit name used in configs, mappings and reports (e.g. "digital").
        weight_format: name of the weight quantizer (see `odimo.quant.WEIGHT_QUANTIZERS`).
        supports_grouped: whether a ``conv`` unit can run grouped/depthwise convs.
        role: ``precise``, ``cheap`` or any other word (see the module doc).
        operator: ``conv`` or ``depthwise3x3`` (see the module doc).
    """

    name: str
    weight_format: str
    supports_grouped: bool = True
    role: str = "aux"
    operator: str = "conv"

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(f"unit {self.name}: operator must be one of {OPERATORS}")

    def runs(self, g: LayerGeometry) -> bool:
        """Whether this unit can compute (some output channels of) a layer of geometry `g`."""
        if self.operator == "depthwise3x3":
            square = g.k_x == 3 and g.k_y == 3 and g.c_in == g.c_out
            return square and (g.groups == g.c_in or g.operator_choice)
        return self.supports_grouped or g.groups == 1


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
    """A chip whose compute units run disjoint output channels of a layer in parallel.

    Subclasses set `units`, `constants` (a frozen dataclass of numbers, `constants_type`),
    `name`, and implement the three cost methods. Everything else has a generic default that
    a platform may override: baselines, metric aliases, activation bits, the unit of fixed
    layers, and the calibration hooks (`CYCLE_CONSTANTS`, `cycle_terms`, `energy_terms`).
    """

    name: str
    units: tuple[ComputeUnit, ...]
    #: The cheap unit's analog read-out (ADC and noise); None = exact accumulation.
    analog: AnalogArithmetic | None = None
    constants: object
    constants_type: ClassVar[type]
    #: Name of the cheap unit; None: the unit whose role is ``cheap``.
    cheap_unit: str | None = None
    #: Bits of the unsigned activation quantizer every layer's input goes through.
    activation_bits: int = 7
    #: Calibration: per unit, (constant, True when the coefficient is 1/constant) of each term
    #: of `cycle_terms`; empty when the platform cannot be calibrated.
    CYCLE_CONSTANTS: ClassVar[dict[str, tuple[tuple[str, bool], ...]]] = {}
    #: Calibration: the energy constants, in the order of `energy_terms`.
    ENERGY_CONSTANTS: ClassVar[tuple[str, ...]] = ()
    #: Extra metric names: alias -> generic key of `NetworkCost.summary` (e.g. DIANA's
    #: ``analog_frac`` -> ``frac_analog``).
    METRIC_ALIASES: ClassVar[dict[str, str]] = {}

    @property
    def freq_hz(self) -> float:
        return float(self.constants.freq_hz)  # type: ignore[attr-defined]

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

    def role_index(self, role: str) -> int:
        """Index of the first unit declaring `role`; ConfigError if none does."""
        for i, unit in enumerate(self.units):
            if unit.role == role:
                return i
        raise ConfigError(f"platform {self.name} declares no unit with role {role!r}")

    def cheap_unit_index(self) -> int:
        """Index of the cheap unit: generic code asks this, never assumes an index."""
        if self.cheap_unit:
            return self.unit_index(self.cheap_unit)
        return self.role_index("cheap")

    def precise_unit_index(self) -> int:
        """Index of the unit that runs every layer (fixed layers and ties go to it): the one
        declaring role ``precise``, unless a config made it the cheap unit (then the first
        other unit, preferring one that runs grouped convs)."""
        precise, cheap = self.role_index("precise"), self.cheap_unit_index()
        if precise != cheap:
            return precise
        others = [i for i in range(self.num_units) if i != cheap]
        return next((i for i in others if self.units[i].supports_grouped), others[0])

    def options(self) -> dict:
        """Constructor options besides `constants` and `name` that a config must carry to
        rebuild this platform exactly (written by `platform_to_config`)."""
        return {}

    def fixed_unit_index(self, geometry: LayerGeometry) -> int:
        """Unit of a layer whose mapping the architecture fixes: the precise unit if it can
        run it, else the first unit that can."""
        allowed = self.allowed_units(geometry)
        precise = self.precise_unit_index()
        return precise if allowed[precise] else allowed.index(True)

    def allowed_units(self, geometry: LayerGeometry | None = None, groups: int = 1) -> list[bool]:
        """Which units may run a layer. Without a geometry (only `groups`), operator units
        other than ``conv`` are not allowed (they need the layer's shape)."""
        if geometry is None:
            return [
                u.operator == "conv" and (u.supports_grouped or groups == 1) for u in self.units
            ]
        return [u.runs(geometry) for u in self.units]

    def baselines(self) -> dict[str, tuple]:
        """Named baseline mappings: name -> (rule, *arguments) of `odimo.nn.baselines`.

        Generic: every free layer on one unit (``all_<unit>``), each whole free layer on its
        fastest unit (``min_latency``), on its least-energy unit (``min_energy``), and the
        fastest with free slots filled by the precise unit (``min_latency_max8``).
        """
        out: dict[str, tuple] = {f"all_{u.name}": ("all", u.name) for u in self.units}
        out["min_latency"] = ("fastest",)
        out["min_energy"] = ("least_energy",)
        out["min_latency_max8"] = ("fastest_filled",)
        return out

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

    # --- calibration hooks ------------------------------------------------------------------
    @property
    def calibratable(self) -> bool:
        """Whether `odimo.calibration` can fit this platform's constants."""
        return bool(self.CYCLE_CONSTANTS)

    def cycle_terms(self, counts: Tensor, geom: GeometryTable) -> dict[str, tuple[Tensor, ...]]:
        """Per unit, the terms [L] whose coefficients (`CYCLE_CONSTANTS`) give its cycles."""
        raise ConfigError(f"platform {self.name} declares no calibration terms")

    def energy_terms(self, unit_cycles: Tensor) -> tuple[Tensor, ...]:
        """Terms [L] in which energy is linear, one per `ENERGY_CONSTANTS` entry."""
        raise ConfigError(f"platform {self.name} declares no energy calibration terms")

    def with_constants(self, constants: object, name: str) -> Platform:
        """The same platform (units, options) with other constants and another name."""
        other = copy.copy(self)
        other.constants = constants
        other.name = name
        return other

    def check_roles(self) -> None:
        """Raise ValueError unless exactly one unit is precise and a cheap unit exists."""
        roles = [u.role for u in self.units]
        if roles.count("precise") != 1:
            raise ValueError(f"platform {self.name}: exactly one unit must have role precise")
        if self.num_units < 2:
            raise ValueError(f"platform {self.name}: needs at least two units")
        self.cheap_unit_index()


def soft_max_cycles(unit_cycles: Tensor, temperature: float) -> Tensor:
    """Σ_u softmax(c/T)_u·c_u over the last axis: a smooth max of the units' cycles (a smooth
    min for T < 0); the search's differentiable stand-in for max (or min)."""
    weights = torch.softmax(unit_cycles / temperature, dim=-1)
    return (weights * unit_cycles).sum(-1)


def counts_from_assignment(assignments: list[Tensor], num_units: int) -> Tensor:
    """Hard channel counts [L, U] from per-layer unit indices ([C_out] longs per layer)."""
    rows = [torch.bincount(a.long(), minlength=num_units)[:num_units] for a in assignments]
    return torch.stack(rows).to(torch.float32)
