# SPDX-License-Identifier: Apache-2.0
"""DIANA: an 8-bit digital core and a ternary analog in-memory core running in parallel.

Cost model (cycles at 260 MHz), exactly as the method's §4 defines it, vectorised over layers:

    T_d = ceil16(c_d/g)·C_in·ceil16(O_x)·O_y·K_x·K_y + [c_d>=1]·O_x·O_y·(c_d + C_in)/8
    T_a = [c_a>=1]·8·C_in·K_x·K_y + ceil512(c_a)·ceil128(C_in)·O_x·O_y / u · 18.2

ceilN(x) = floor((x+N-1)/N) with a straight-through gradient; u (analog unroll) carries no
gradient; the gates [c>=1] have the gradient of clamp(c, 0, 1) (see `gate_ste`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from odimo.hw.geometry import GeometryTable
from odimo.hw.platform import ComputeUnit, Platform, soft_max_cycles
from odimo.ste import ceil_div_ste, gate_ste

FREQ_HZ = 260e6
#: One analog array activation: 70 ns at 260 MHz (18.2 exactly; 70e-9 * 260e6 rounds up).
ANALOG_PASS_CYCLES = 18.2
ANALOG_ROWS = 1152
ANALOG_COLS = 512
DIGITAL_PE = 16
#: Power (mW) with only the digital core, only the analog core, or both busy.
POWER_DIGITAL_MW = 24.96
POWER_ANALOG_MW = 28.74
POWER_BOTH_MW = 42.39

DIGITAL = ComputeUnit("digital", "int8_pow2", supports_grouped=True, role="precise")
ANALOG = ComputeUnit("analog", "ternary_per_channel", supports_grouped=False, role="cheap")

_UNROLLS = (1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class DianaConstants:
    """The numbers of DIANA's cost model; `conf/platform/<name>.yaml` sets them per platform.

    The defaults are the method's §4 values (the golden costs). `tasks/calibrate.py` fits the
    continuous ones (cycle coefficients and powers) to measurements; the array and PE sizes
    are the structure of the chip and are not fitted.
    """

    freq_hz: float = FREQ_HZ  # clock (Hz): cycles -> ms, mW·cycles -> µJ
    digital_cycles_per_tile: float = 1.0  # digital cycles per (16-channel x 16-column) tile step
    load_store_divisor: float = 8.0  # digital load/store cycles = O_x·O_y·(c_d + C_in) / this
    weight_load_cycles_per_row: float = 8.0  # analog weight-load cycles per C_in·K_x·K_y row
    analog_pass_cycles: float = ANALOG_PASS_CYCLES  # cycles of one analog array activation
    power_digital_mw: float = POWER_DIGITAL_MW  # power with only the digital core busy (mW)
    power_analog_mw: float = POWER_ANALOG_MW  # power with only the analog core busy (mW)
    power_both_mw: float = POWER_BOTH_MW  # power with both cores busy (mW)
    digital_pe: int = DIGITAL_PE  # digital PE array side (output channels and columns per tile)
    analog_rows: int = ANALOG_ROWS  # analog array rows (weights per output channel)
    analog_cols: int = ANALOG_COLS  # analog array columns (output channels per pass)
    analog_in_tile: int = 128  # input channels per analog pass
    analog_min_rows: int = 64  # input channels an analog layer occupies at least

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"DIANA constant {field.name} must be > 0, got {value!r}")


DEFAULT_CONSTANTS = DianaConstants()


def digital_terms(
    c_d: Tensor, geom: GeometryTable, const: DianaConstants = DEFAULT_CONSTANTS
) -> tuple[Tensor, Tensor]:
    """The two digital terms [L]: tile steps ceil16(c_d/g)·C_in·ceil16(O_x)·O_y·K_x·K_y and
    load/store bytes [c_d>=1]·O_x·O_y·(c_d + C_in). Cycles are linear in them."""
    pe = const.digital_pe
    spatial = torch.floor((geom.o_x + pe - 1) / pe) * geom.o_y
    compute = ceil_div_ste(c_d / geom.groups, pe) * geom.c_in * spatial * geom.k_x * geom.k_y
    return compute, gate_ste(c_d) * geom.o_x * geom.o_y * (c_d + geom.c_in)


def digital_cycles(
    c_d: Tensor, geom: GeometryTable, const: DianaConstants = DEFAULT_CONSTANTS
) -> Tensor:
    """Digital-core cycles [L] for `c_d` output channels per layer (soft or whole counts)."""
    compute, load_store = digital_terms(c_d, geom, const)
    if const.digital_cycles_per_tile != 1.0:
        compute = compute * const.digital_cycles_per_tile
    return compute + load_store / const.load_store_divisor


def analog_unroll(
    c_a: Tensor, geom: GeometryTable, const: DianaConstants = DEFAULT_CONSTANTS
) -> Tensor:
    """Largest u in {1,2,4,8} with u·c_a <= 512 and (u+K_x-1)·max(64,C_in)·K_y <= 1152 (else 1).

    Computed from detached counts: the unroll choice carries no gradient.
    """
    u = torch.tensor(_UNROLLS, dtype=c_a.dtype, device=c_a.device)  # [4]
    fits_cols = u * c_a.detach().unsqueeze(-1) <= const.analog_cols
    rows = (u + geom.k_x.unsqueeze(-1) - 1) * geom.c_in.clamp(min=const.analog_min_rows).unsqueeze(
        -1
    )
    fits_rows = rows * geom.k_y.unsqueeze(-1) <= const.analog_rows
    return torch.where(fits_cols & fits_rows, u, torch.ones_like(u)).amax(-1)


def analog_passes(
    c_a: Tensor, geom: GeometryTable, const: DianaConstants = DEFAULT_CONSTANTS
) -> Tensor:
    """Analog array activations [L] (soft or whole counts), before the pass duration."""
    tile = const.analog_in_tile
    in_tiles = torch.floor((geom.c_in + tile - 1) / tile)
    passes = ceil_div_ste(c_a, const.analog_cols) * in_tiles * geom.o_x * geom.o_y
    return passes / analog_unroll(c_a, geom, const)


def analog_terms(
    c_a: Tensor, geom: GeometryTable, const: DianaConstants = DEFAULT_CONSTANTS
) -> tuple[Tensor, Tensor]:
    """The two analog terms [L]: weight rows [c_a>=1]·C_in·K_x·K_y and array activations."""
    rows = gate_ste(c_a) * geom.c_in * geom.k_x * geom.k_y
    return rows, analog_passes(c_a, geom, const)


def analog_cycles(
    c_a: Tensor, geom: GeometryTable, const: DianaConstants = DEFAULT_CONSTANTS
) -> Tensor:
    """Analog-core cycles [L] for `c_a` output channels per layer (soft or whole counts)."""
    rows, passes = analog_terms(c_a, geom, const)
    return const.weight_load_cycles_per_row * rows + passes * const.analog_pass_cycles


def energy_mw_cycles(
    t_d: Tensor, t_a: Tensor, overlap: Tensor, const: DianaConstants = DEFAULT_CONSTANTS
) -> Tensor:
    """E = P_both·t_c + P_a·(T_a - t_c) + P_d·(T_d - t_c), in mW·cycles, for overlap t_c."""
    return (
        const.power_both_mw * overlap
        + const.power_analog_mw * (t_a - overlap)
        + const.power_digital_mw * (t_d - overlap)
    )


class Diana(Platform):
    """The DIANA SoC. Unit order (α rows, mapping codes): digital = 0, analog = 1.

    Args:
        smooth_cycles: temperature (in cycles) of the smooth max/min used during the search:
            softmax(t/τ)·t. The method's value is 1.0, which on cycle counts is numerically a
            hard max (only the slower unit gets gradient); a larger τ spreads the gradient.
        constants: the cost model's numbers (default: the method's DIANA).
        name: the platform's name in configs and mapping files (a calibrated DIANA has its own).
        cheap_unit: the low-precision unit that baselines and reports treat as the cheap one.
    """

    name = "diana"
    units = (DIGITAL, ANALOG)
    constants_type = DianaConstants
    activation_bits = 7
    #: `arch/analog_frac` is DIANA's name for the cheap unit's share (`arch/frac_analog`).
    METRIC_ALIASES = {"analog_frac": "frac_analog"}

    def __init__(
        self,
        smooth_cycles: float = 1.0,
        constants: DianaConstants | None = None,
        name: str = "diana",
        cheap_unit: str = "analog",
    ):
        if smooth_cycles <= 0:
            raise ValueError("smooth_cycles must be > 0")
        self.smooth_cycles = float(smooth_cycles)
        self.constants = constants if constants is not None else DEFAULT_CONSTANTS
        self.name = name
        self.cheap_unit = cheap_unit
        self.unit_index(cheap_unit)  # a KeyError for a unit the chip does not have

    def options(self) -> dict:
        return {"cheap_unit": self.cheap_unit, "smooth_cycles": self.smooth_cycles}

    def baselines(self) -> dict[str, tuple]:
        """DIANA's five: all_digital, all_analog (fixed layers too where the analog core can
        run them, as the reference's all-ternary network), io_digital, min_latency(_max8)."""
        return {
            "all_digital": ("all", "digital"),
            "all_analog": ("all_with_fixed", "analog"),
            "io_digital": ("io", "digital", "analog"),
            "min_latency": ("fastest",),
            "min_latency_max8": ("fastest_filled",),
        }

    def unit_cycles(self, counts: Tensor, geom: GeometryTable) -> Tensor:
        return torch.stack(
            [
                digital_cycles(counts[:, 0], geom, self.constants),
                analog_cycles(counts[:, 1], geom, self.constants),
            ],
            dim=-1,
        )

    def latency_cycles(self, unit_cycles: Tensor, soft: bool) -> Tensor:
        if soft:
            return soft_max_cycles(unit_cycles, self.smooth_cycles)
        return unit_cycles.amax(-1)

    def _overlap(self, unit_cycles: Tensor, soft: bool) -> Tensor:
        if soft:
            return soft_max_cycles(unit_cycles, -self.smooth_cycles)
        return unit_cycles.amin(-1)

    def energy_mw_cycles(self, unit_cycles: Tensor, soft: bool) -> Tensor:
        overlap = self._overlap(unit_cycles, soft)
        return energy_mw_cycles(unit_cycles[:, 0], unit_cycles[:, 1], overlap, self.constants)

    # --- calibration: cycles and energy are linear in these constants ---------------------
    #: Fitted cycle coefficients per unit: (constant, True when the coefficient is 1/constant).
    CYCLE_CONSTANTS = {
        "digital": (("digital_cycles_per_tile", False), ("load_store_divisor", True)),
        "analog": (("weight_load_cycles_per_row", False), ("analog_pass_cycles", False)),
    }
    #: Fitted energy coefficients (mW), in the order of `energy_terms`.
    ENERGY_CONSTANTS = ("power_both_mw", "power_analog_mw", "power_digital_mw")

    def cycle_terms(self, counts: Tensor, geom: GeometryTable) -> dict[str, tuple[Tensor, ...]]:
        """Per unit, the terms [L] whose coefficients (`CYCLE_CONSTANTS`) give its cycles."""
        return {
            "digital": digital_terms(counts[:, 0], geom, self.constants),
            "analog": analog_terms(counts[:, 1], geom, self.constants),
        }

    def energy_terms(self, unit_cycles: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Overlap, analog-only and digital-only cycles [L]: energy is linear in the powers."""
        overlap = unit_cycles.amin(-1)
        return overlap, unit_cycles[:, 1] - overlap, unit_cycles[:, 0] - overlap
