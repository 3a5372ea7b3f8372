# SPDX-License-Identifier: Apache-2.0
"""The hardware cost of a whole quantized network, and the regularizers built on it.

`NetworkCost` records the geometry of every conv once (a dry forward pass) and then evaluates
all layers in one vectorised computation per call: only the per-layer channel counts are
gathered from the layers; nothing leaves the device (no `.item()`) inside a training step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from odimo.errors import ConfigError
from odimo.hw.geometry import GeometryTable, LayerGeometry, record_geometry
from odimo.hw.platform import CostBreakdown, Platform
from odimo.nn.conv import QuantConv2d


class NetworkCost:
    """Cost model of one network on one platform.

    Args:
        model: a search or mapped model (every conv a `QuantConv2d`).
        platform: the platform whose cost model to use.
        input_size: [C, H, W] of one input, for the dry forward pass that records geometry.
    """

    def __init__(self, model: nn.Module, platform: Platform, input_size: tuple[int, int, int]):
        self.platform = platform
        self.geometry: list[LayerGeometry] = record_geometry(model, tuple(input_size))
        modules = dict(model.named_modules())
        self.layers: list[QuantConv2d] = []
        for g in self.geometry:
            layer = modules[g.name]
            if not isinstance(layer, QuantConv2d):
                raise ConfigError(
                    f"layer {g.name} is a {type(layer).__name__}, not a quantized "
                    "conv: build the model in 'search' or 'mapped' form"
                )
            self.layers.append(layer)
        self.names = [g.name for g in self.geometry]
        self._tables: dict[tuple, GeometryTable] = {}

    def table(self, device: torch.device, dtype: torch.dtype = torch.float32) -> GeometryTable:
        """The geometry tensors on a device (cached)."""
        key = (str(device), dtype)
        if key not in self._tables:
            self._tables[key] = GeometryTable(self.geometry, device=device, dtype=dtype)
        return self._tables[key]

    def counts(self, soft: bool) -> Tensor:
        """Channels per unit of every layer [L, U]."""
        return torch.stack([layer.unit_counts(soft) for layer in self.layers])

    def __call__(self, soft: bool = True) -> CostBreakdown:
        """Soft (differentiable, search) or hard (argmax, reporting) costs of all layers."""
        counts = self.counts(soft)
        if not soft:
            counts = counts.detach().double()
        return self.platform.evaluate(counts, self.table(counts.device, counts.dtype), soft=soft)

    @torch.no_grad()
    def summary(self, soft: bool = False) -> dict[str, float]:
        """Totals as plain floats (host sync: call it outside the training step)."""
        cost = self(soft=soft)
        counts = cost.counts
        latency = float(cost.total_latency_cycles)
        energy = float(cost.total_energy_mw_cycles)
        out = {
            "latency_cycles": latency,
            "latency_ms": float(self.platform.cycles_to_ms(latency)),
            "energy_mw_cycles": energy,
            "energy_uj": float(self.platform.mw_cycles_to_uj(energy)),
            **unit_fractions(counts, self.platform),
        }
        return out


def unit_fractions(counts: Tensor, platform: Platform) -> dict[str, float]:
    """Share of all channels on each unit (`frac_<unit>`), the cheap unit's (`cheap_frac`) and
    the platform's aliases of them (DIANA: `analog_frac`)."""
    total = counts.sum()
    out = {
        f"frac_{name}": float(counts[:, u].sum() / total)
        for u, name in enumerate(platform.unit_names)
    }
    out["cheap_frac"] = out[f"frac_{platform.unit_names[platform.cheap_unit_index()]}"]
    out.update({alias: out[key] for alias, key in platform.METRIC_ALIASES.items() if key in out})
    return out


class Regularizer:
    """strength × scale × a scalar cost of the network (the term added to the task loss).

    `scale` is a plain float multiplier that schedules may change between steps (the λ ramp);
    it is 1 otherwise.
    """

    name = "base"
    #: unit of `cost`, for reports ("cycles" or "mW·cycles")
    unit = "cycles"

    def __init__(self, strength: float):
        if not strength >= 0:
            raise ConfigError(f"strength must be a number >= 0, got {strength!r}")
        self.strength = float(strength)
        self.scale = 1.0

    def cost(self, network: NetworkCost) -> Tensor:
        """The unweighted, differentiable cost (soft counts)."""
        raise NotImplementedError

    def hard_cost(self, network: NetworkCost) -> float:
        """The same cost of the current argmax mapping (host sync: not in a training step)."""
        with torch.no_grad():
            return float(self.layer_hard(network(soft=False)).sum())

    def layer_hard(self, cost: CostBreakdown) -> Tensor:
        """The per-layer terms [L] of the hard cost (the hard cost is their sum)."""
        return cost.latency_cycles

    def __call__(self, network: NetworkCost) -> Tensor:
        return (self.strength * self.scale) * self.cost(network)


class LatencyRegularizer(Regularizer):
    """Σ_layers smooth-max of the units' cycles (`reg=latency`), in cycles."""

    name = "latency"

    def cost(self, network: NetworkCost) -> Tensor:
        return network(soft=True).total_latency_cycles


class EnergyRegularizer(Regularizer):
    """Σ_layers energy with the soft overlap model (`reg=power`), in mW·cycles."""

    name = "power"
    unit = "mW·cycles"

    def cost(self, network: NetworkCost) -> Tensor:
        return network(soft=True).total_energy_mw_cycles

    def layer_hard(self, cost: CostBreakdown) -> Tensor:
        return cost.energy_mw_cycles


class NaiveEnergyRegularizer(Regularizer):
    """Σ_layers busy cycles of all units (`reg=power-naive`), in cycles."""

    name = "power-naive"

    def cost(self, network: NetworkCost) -> Tensor:
        return network.platform.busy_cycles(network(soft=True).unit_cycles).sum()

    def layer_hard(self, cost: CostBreakdown) -> Tensor:
        return cost.unit_cycles.sum(-1)


class NoRegularizer(Regularizer):
    """No cost term (`reg=none`): the search optimises accuracy only."""

    name = "none"

    def __init__(self, strength: float = 0.0):
        super().__init__(strength)

    def cost(self, network: NetworkCost) -> Tensor:
        return torch.zeros((), device=network.layers[0].weight.device)

    def __call__(self, network: NetworkCost) -> Tensor:
        return self.cost(network)


class TargetRegularizer(Regularizer):
    """Target (constraint) mode: strength × max(0, cost − target), only the excess is penalised.

    The strength is not guessed: `calibrate` sets it so that the penalty at the start of the
    search equals the task loss after the warm-up, λ = L_task / (cost_initial − target) (the
    denominator is floored at 5 % of the target, for a start that already meets it).

    Args:
        base: the regularizer whose cost is constrained (latency or power).
        target: the target in the base cost's unit (cycles or mW·cycles).
    """

    def __init__(self, base: Regularizer, target: float):
        if not target > 0:
            raise ConfigError(f"the cost target must be > 0, got {target!r}")
        super().__init__(0.0)
        self.base = base
        self.target = float(target)
        self.name = f"{base.name}-target"
        self.unit = base.unit

    def calibrate(self, task_loss: float, initial_cost: float) -> float:
        """Set and return the strength from the task loss and the initial cost."""
        gap = max(float(initial_cost) - self.target, 0.05 * self.target)
        self.strength = float(task_loss) / gap
        return self.strength

    def cost(self, network: NetworkCost) -> Tensor:
        return torch.relu(self.base.cost(network) - self.target)

    def layer_hard(self, cost: CostBreakdown) -> Tensor:
        return self.base.layer_hard(cost)


REGULARIZERS: dict[str, type[Regularizer]] = {
    r.name: r
    for r in (LatencyRegularizer, EnergyRegularizer, NaiveEnergyRegularizer, NoRegularizer)
}


def make_regularizer(name: str, strength: float) -> Regularizer:
    """Regularizer by its `reg` config name."""
    if name not in REGULARIZERS:
        raise ConfigError(f"unknown reg {name!r} (choose from: {', '.join(REGULARIZERS)})")
    return REGULARIZERS[name](strength)
