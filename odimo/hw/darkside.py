# SPDX-License-Identifier: Apache-2.0
"""Darkside: an 8-core RISC-V cluster and a depthwise engine (DWE) running in parallel.

Here the units differ in *operator*, not precision: in an operator-choice layer (Darkside's
searchable slots, `LayerGeometry.operator_choice`) each output channel is either a full 3x3
convolution over all inputs on the cluster, or the 3x3 depthwise filter of its own input
channel on the DWE. Cost model (cycles at 260 MHz, the reference's formulas), vectorised:

    cluster(k) = ⌈O_y/2⌉·⌈O_x/8⌉ · (2·K_x·K_y·C_in/g·[k>=1] + ⌈k/4⌉·(14·⌈K_x·K_y·C_in/g / 4⌉ + 15))
    DWE(m)     = ⌈m/16⌉ · (9 + 9·O_x + 4·O_x·O_y)

⌈·⌉ on channel counts has a straight-through gradient. The reference pays the cluster's im2col
term even at k = 0 (`im2col_at_zero: true` reproduces it); odimo's default does not, as a
cluster with no channels does not run. Latency is the max of the two units (default) or the
reference's softmax combination at temperature 1e7 cycles (`latency: soft_mean`, almost the
mean for these cycle counts). Energy: P_cluster·t_cluster + P_DWE·t_DWE + P_idle·(idle time of
each unit up to the layer's latency). `count: choice_layers` costs only the operator-choice
layers, as the reference does; the default `all` costs every layer (fixed ones on the unit
`fixed_unit_index` gives them).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from odimo.hw.geometry import GeometryTable, LayerGeometry
from odimo.hw.platform import ComputeUnit, Platform, soft_max_cycles
from odimo.ste import ceil_div_ste, gate_ste

CLUSTER = ComputeUnit("cluster", "int8_pow2", supports_grouped=True, role="precise")
DWE = ComputeUnit("dwe", "int8_pow2", supports_grouped=True, role="cheap", operator="depthwise3x3")

LATENCY_MODES = ("max", "soft_mean")
COUNT_MODES = ("all", "choice_layers")


@dataclass(frozen=True)
class DarksideConstants:
    """The numbers of Darkside's cost model (the reference's values by default)."""

    freq_hz: float = 260e6  # clock (Hz): cycles -> ms, mW·cycles -> µJ
    cluster_rows_per_iter: int = 2  # output rows per cluster iteration (⌈O_y/2⌉ iterations)
    cluster_cols_per_iter: int = 8  # output columns per cluster iteration (⌈O_x/8⌉)
    cluster_im2col_cycles: float = 2.0  # cycles per K_x·K_y·C_in/g im2col element and iteration
    cluster_channels_per_iter: int = 4  # output channels computed together (⌈k/4⌉ groups)
    cluster_mac_cycles: float = 14.0  # cycles per ⌈K_x·K_y·C_in/g / 4⌉ per 4-channel group
    cluster_channel_cycles: float = 15.0  # overhead cycles per 4-channel group and iteration
    dwe_channels: int = 16  # channels the DWE computes together (⌈m/16⌉ passes)
    dwe_setup_cycles: float = 9.0  # cycles per pass (the 3x3 kernel load)
    dwe_row_cycles: float = 9.0  # cycles per output column per pass
    dwe_pixel_cycles: float = 4.0  # cycles per output pixel per pass
    power_cluster_mw: float = 168.0  # cluster power when busy (mW)
    power_dwe_mw: float = 118.0  # DWE power when busy (mW)
    power_idle_mw: float = 1.32  # power of an idle unit (mW)

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"Darkside constant {field.name} must be > 0, got {value!r}")


def _ceil(x: Tensor, n: float) -> Tensor:
    """⌈x/n⌉ of geometry (no gradient needed)."""
    return torch.floor((x + n - 1) / n)


def cluster_terms(k: Tensor, geom: GeometryTable, c: DarksideConstants, im2col_at_zero: bool):
    """The three cluster terms [L] whose coefficients are im2col, MAC and per-group cycles."""
    iters = _ceil(geom.o_y, c.cluster_rows_per_iter) * _ceil(geom.o_x, c.cluster_cols_per_iter)
    fan = geom.k_x * geom.k_y * geom.c_in / geom.groups
    im2col = iters * fan
    if not im2col_at_zero:
        im2col = im2col * gate_ste(k)
    groups = ceil_div_ste(k, c.cluster_channels_per_iter) * iters
    return im2col, groups * _ceil(fan, 4), groups


def cluster_cycles(k: Tensor, geom: GeometryTable, c: DarksideConstants, im2col_at_zero: bool):
    """Cluster cycles [L] for `k` output channels per layer (soft or whole counts)."""
    im2col, macs, groups = cluster_terms(k, geom, c, im2col_at_zero)
    return (
        c.cluster_im2col_cycles * im2col
        + c.cluster_mac_cycles * macs
        + c.cluster_channel_cycles * groups
    )


def dwe_terms(m: Tensor, geom: GeometryTable, c: DarksideConstants):
    """The three DWE terms [L]: passes, passes·O_x, passes·O_x·O_y."""
    passes = ceil_div_ste(m, c.dwe_channels)
    return passes, passes * geom.o_x, passes * geom.o_x * geom.o_y


def dwe_cycles(m: Tensor, geom: GeometryTable, c: DarksideConstants) -> Tensor:
    """DWE cycles [L] for `m` depthwise channels per layer (soft or whole counts)."""
    passes, rows, pixels = dwe_terms(m, geom, c)
    return c.dwe_setup_cycles * passes + c.dwe_row_cycles * rows + c.dwe_pixel_cycles * pixels


class Darkside(Platform):
    """The Darkside SoC. Units: cluster (precise, any conv), dwe (cheap, 3x3 depthwise only).

    Args:
        constants: the cost model's numbers (default: the reference's).
        name: the platform's name in configs and mapping files.
        latency: ``max`` (default) or ``soft_mean`` (the reference's combination).
        soft_mean_cycles: the reference's softmax temperature (cycles) for ``soft_mean``.
        smooth_cycles: temperature of the smooth max used during the search (``max`` mode).
        im2col_at_zero: pay the cluster's im2col term at k = 0 (the reference does).
        count: ``all`` layers or only the ``choice_layers`` (the reference).
    """

    name = "darkside"
    units = (CLUSTER, DWE)
    constants_type = DarksideConstants
    activation_bits = 8
    CYCLE_CONSTANTS = {
        "cluster": (
            ("cluster_im2col_cycles", False),
            ("cluster_mac_cycles", False),
            ("cluster_channel_cycles", False),
        ),
        "dwe": (
            ("dwe_setup_cycles", False),
            ("dwe_row_cycles", False),
            ("dwe_pixel_cycles", False),
        ),
    }
    ENERGY_CONSTANTS = ("power_cluster_mw", "power_dwe_mw", "power_idle_mw")

    def __init__(
        self,
        constants: DarksideConstants | None = None,
        name: str = "darkside",
        latency: str = "max",
        soft_mean_cycles: float = 1e7,
        smooth_cycles: float = 1.0,
        im2col_at_zero: bool = False,
        count: str = "all",
        cheap_unit: str | None = None,
    ):
        if latency not in LATENCY_MODES:
            raise ValueError(f"latency must be one of {LATENCY_MODES}, got {latency!r}")
        if count not in COUNT_MODES:
            raise ValueError(f"count must be one of {COUNT_MODES}, got {count!r}")
        if not (smooth_cycles > 0 and soft_mean_cycles > 0):
            raise ValueError("smooth_cycles and soft_mean_cycles must be > 0")
        self.constants = constants if constants is not None else DarksideConstants()
        self.name = name
        self.latency = latency
        self.soft_mean_cycles = float(soft_mean_cycles)
        self.smooth_cycles = float(smooth_cycles)
        self.im2col_at_zero = bool(im2col_at_zero)
        self.count = count
        self.cheap_unit = cheap_unit
        self.check_roles()

    def options(self) -> dict:
        """The constructor options a config must carry to rebuild this platform."""
        return {
            "latency": self.latency,
            "soft_mean_cycles": self.soft_mean_cycles,
            "smooth_cycles": self.smooth_cycles,
            "im2col_at_zero": self.im2col_at_zero,
            "count": self.count,
        }

    def fixed_unit_index(self, geometry: LayerGeometry) -> int:
        """A fixed 3x3 depthwise layer runs on the DWE (the engine built for it), any other
        fixed layer on the cluster."""
        dwe = self.unit_index("dwe")
        if geometry.groups > 1 and self.units[dwe].runs(geometry):
            return dwe
        return super().fixed_unit_index(geometry)

    def baselines(self) -> dict[str, tuple]:
        """The generic ones, plus the reference's names and an even split of every slot."""
        out = super().baselines()
        out["all_conv"] = ("all", "cluster")
        out["all_depthwise"] = ("all", "dwe")
        out["even_split"] = ("even", "cluster", "dwe")
        return out

    def unit_cycles(self, counts: Tensor, geom: GeometryTable) -> Tensor:
        c = self.constants
        cycles = torch.stack(
            [
                cluster_cycles(counts[:, 0], geom, c, self.im2col_at_zero),
                dwe_cycles(counts[:, 1], geom, c),
            ],
            dim=-1,
        )
        if self.count == "choice_layers":
            cycles = cycles * geom.operator_choice.unsqueeze(-1)
        return cycles

    def latency_cycles(self, unit_cycles: Tensor, soft: bool) -> Tensor:
        if self.latency == "soft_mean":
            return soft_max_cycles(unit_cycles, self.soft_mean_cycles)
        if soft:
            return soft_max_cycles(unit_cycles, self.smooth_cycles)
        return unit_cycles.amax(-1)

    def energy_mw_cycles(self, unit_cycles: Tensor, soft: bool) -> Tensor:
        cluster, dwe, idle = self.energy_terms(unit_cycles, soft)
        c = self.constants
        return c.power_cluster_mw * cluster + c.power_dwe_mw * dwe + c.power_idle_mw * idle

    def cycle_terms(self, counts: Tensor, geom: GeometryTable) -> dict[str, tuple[Tensor, ...]]:
        c = self.constants
        return {
            "cluster": cluster_terms(counts[:, 0], geom, c, self.im2col_at_zero),
            "dwe": dwe_terms(counts[:, 1], geom, c),
        }

    def energy_terms(self, unit_cycles: Tensor, soft: bool = False) -> tuple[Tensor, ...]:
        """Cluster busy, DWE busy and summed idle cycles [L] (idle up to the latency)."""
        latency = self.latency_cycles(unit_cycles, soft).unsqueeze(-1)
        idle = (latency - unit_cycles).sum(-1)
        return unit_cycles[:, 0], unit_cycles[:, 1], idle
