# SPDX-License-Identifier: Apache-2.0
"""DIANA: an 8-bit digital core and a ternary analog in-memory core running in parallel.

Cost model (cycles at 260 MHz), exactly as the method's §4 defines it, vectorised over layers:

    T_d = ceil16(c_d/g)·C_in·ceil16(O_x)·O_y·K_x·K_y + [c_d>=1]·O_x·O_y·(c_d + C_in)/8
    T_a = [c_a>=1]·8·C_in·K_x·K_y + ceil512(c_a)·ceil128(C_in)·O_x·O_y / u · 18.2

ceilN(x) = floor((x+N-1)/N) with a straight-through gradient; u (analog unroll) carries no
gradient; the gates [c>=1] have the gradient of clamp(c, 0, 1) (see `gate_ste`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from odimo.function import ceil_div_ste, gate_ste
from odimo.hw.geometry import GeometryTable
from odimo.hw.platform import ComputeUnit, Platform

FREQ_HZ = 260e6
#: One analog array activation: 70 ns at 260 MHz.
ANALOG_PASS_CYCLES = 70e-9 * FREQ_HZ
ANALOG_ROWS = 1152
ANALOG_COLS = 512
DIGITAL_PE = 16
#: Power (mW) with only the digital core, only the analog core, or both busy.
POWER_DIGITAL_MW = 24.96
POWER_ANALOG_MW = 28.74
POWER_BOTH_MW = 42.39

DIGITAL = ComputeUnit("digital", weight_format="int8_pow2", supports_grouped=True)
ANALOG = ComputeUnit("analog", weight_format="ternary_per_channel", supports_grouped=False)

_UNROLLS = (1.0, 2.0, 4.0, 8.0)


def digital_cycles(c_d: Tensor, geom: GeometryTable) -> Tensor:
    """Digital-core cycles [L] for `c_d` output channels per layer (soft or whole counts)."""
    spatial = torch.floor((geom.o_x + DIGITAL_PE - 1) / DIGITAL_PE) * geom.o_y
    compute = (
        ceil_div_ste(c_d / geom.groups, DIGITAL_PE) * geom.c_in * spatial * geom.k_x * geom.k_y
    )
    load_store = gate_ste(c_d) * geom.o_x * geom.o_y * (c_d + geom.c_in) / 8
    return compute + load_store


def analog_unroll(c_a: Tensor, geom: GeometryTable) -> Tensor:
    """Largest u in {1,2,4,8} with u·c_a <= 512 and (u+K_x-1)·max(64,C_in)·K_y <= 1152 (else 1).

    Computed from detached counts: the unroll choice carries no gradient.
    """
    u = torch.tensor(_UNROLLS, dtype=c_a.dtype, device=c_a.device)  # [4]
    fits_cols = u * c_a.detach().unsqueeze(-1) <= ANALOG_COLS
    rows = (u + geom.k_x.unsqueeze(-1) - 1) * geom.c_in.clamp(min=64).unsqueeze(-1)
    fits_rows = rows * geom.k_y.unsqueeze(-1) <= ANALOG_ROWS
    return torch.where(fits_cols & fits_rows, u, torch.ones_like(u)).amax(-1)


def analog_cycles(c_a: Tensor, geom: GeometryTable) -> Tensor:
    """Analog-core cycles [L] for `c_a` output channels per layer (soft or whole counts)."""
    weight_load = gate_ste(c_a) * 8 * geom.c_in * geom.k_x * geom.k_y
    in_tiles = torch.floor((geom.c_in + 127) / 128)
    passes = ceil_div_ste(c_a, ANALOG_COLS) * in_tiles * geom.o_x * geom.o_y
    return weight_load + passes / analog_unroll(c_a, geom) * ANALOG_PASS_CYCLES


def energy_mw_cycles(t_d: Tensor, t_a: Tensor, overlap: Tensor) -> Tensor:
    """E = P_both·t_c + P_a·(T_a - t_c) + P_d·(T_d - t_c), in mW·cycles, for overlap t_c."""
    return (
        POWER_BOTH_MW * overlap
        + POWER_ANALOG_MW * (t_a - overlap)
        + POWER_DIGITAL_MW * (t_d - overlap)
    )


class Diana(Platform):
    """The DIANA SoC. Unit order (α rows, mapping codes): digital = 0, analog = 1.

    Args:
        smooth_cycles: temperature (in cycles) of the smooth max/min used during the search:
            softmax(t/τ)·t. The method's value is 1.0, which on cycle counts is numerically a
            hard max (only the slower unit gets gradient); a larger τ spreads the gradient.
    """

    name = "diana"
    units = (DIGITAL, ANALOG)
    freq_hz = FREQ_HZ

    def __init__(self, smooth_cycles: float = 1.0):
        if smooth_cycles <= 0:
            raise ValueError("smooth_cycles must be > 0")
        self.smooth_cycles = float(smooth_cycles)

    def unit_cycles(self, counts: Tensor, geom: GeometryTable) -> Tensor:
        return torch.stack(
            [digital_cycles(counts[:, 0], geom), analog_cycles(counts[:, 1], geom)], dim=-1
        )

    def latency_cycles(self, unit_cycles: Tensor, soft: bool) -> Tensor:
        if soft:
            weights = torch.softmax(unit_cycles / self.smooth_cycles, dim=-1)
            return (weights * unit_cycles).sum(-1)
        return unit_cycles.amax(-1)

    def _overlap(self, unit_cycles: Tensor, soft: bool) -> Tensor:
        if soft:
            weights = torch.softmax(-unit_cycles / self.smooth_cycles, dim=-1)
            return (weights * unit_cycles).sum(-1)
        return unit_cycles.amin(-1)

    def energy_mw_cycles(self, unit_cycles: Tensor, soft: bool) -> Tensor:
        overlap = self._overlap(unit_cycles, soft)
        return energy_mw_cycles(unit_cycles[:, 0], unit_cycles[:, 1], overlap)
