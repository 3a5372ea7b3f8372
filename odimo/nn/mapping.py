# SPDX-License-Identifier: Apache-2.0
"""The per-channel mapping of a network onto a platform's units, and its JSON file format.

Mapping JSON (written by the search's hand-over callback, read by `cost_report`, the fine-tune
and the export)::

    {
      "format": "odimo.mapping/1",
      "platform": "diana",
      "units": ["digital", "analog"],            # unit index i = position in this list
      "layers": [                                # execution order
        {"name": "conv1", "c_out": 16,
         "channels": {"digital": 10, "analog": 6},      # counts, for people (checked on load)
         "assignment": [0, 0, 1, ...]}                  # unit index of every output channel
      ]
    }
"""

from __future__ import annotations

import json
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from odimo.errors import MappingError
from odimo.hw.geometry import LayerGeometry
from odimo.hw.platform import Platform
from odimo.io import atomic_write_text

FORMAT = "odimo.mapping/1"


@dataclass(frozen=True)
class Mapping:
    """Unit index of every output channel of every mapped layer (layer name -> tuple of ints)."""

    platform: str
    units: tuple[str, ...]
    layers: MappingABC[str, tuple[int, ...]] = field(default_factory=dict)

    def counts(self, name: str) -> list[int]:
        """Channels per unit of one layer."""
        assignment = self.layers[name]
        return [sum(1 for a in assignment if a == u) for u in range(len(self.units))]

    def counts_tensor(self, names: list[str] | tuple[str, ...]) -> torch.Tensor:
        """Hard counts [L, U] (float64) in the given layer order."""
        return torch.tensor([self.counts(n) for n in names], dtype=torch.float64)

    def unit_fraction(self, unit: int) -> float:
        """Fraction of all channels on `unit` (e.g. `platform.cheap_unit_index()`)."""
        total = sum(len(a) for a in self.layers.values())
        return sum(self.counts(n)[unit] for n in self.layers) / max(total, 1)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "platform": self.platform,
            "units": list(self.units),
            "layers": [
                {
                    "name": name,
                    "c_out": len(assignment),
                    "channels": dict(zip(self.units, self.counts(name), strict=True)),
                    "assignment": list(assignment),
                }
                for name, assignment in self.layers.items()
            ],
        }

    def save(self, path: str | Path) -> None:
        """Write the mapping JSON atomically (a reader never sees half a file)."""
        atomic_write_text(path, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def from_json(cls, data: dict, source: str = "mapping") -> Mapping:
        """Parse and check the file's own consistency (not yet against a network)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise MappingError(f'{source}: not an odimo mapping (expected "format": "{FORMAT}")')
        try:
            units = tuple(str(u) for u in data["units"])
            layers: dict[str, tuple[int, ...]] = {}
            for entry in data["layers"]:
                name, assignment = str(entry["name"]), tuple(int(a) for a in entry["assignment"])
                if name in layers:
                    raise MappingError(f"{source}: layer {name!r} appears twice")
                if "c_out" in entry and int(entry["c_out"]) != len(assignment):
                    raise MappingError(
                        f"{source}: layer {name!r} has c_out {entry['c_out']} "
                        f"but {len(assignment)} assignments"
                    )
                if any(a < 0 or a >= len(units) for a in assignment):
                    raise MappingError(
                        f"{source}: layer {name!r} uses a unit index outside 0..{len(units) - 1}"
                    )
                layers[name] = assignment
            mapping = cls(platform=str(data["platform"]), units=units, layers=layers)
            for entry in data["layers"]:
                declared = entry.get("channels")
                if declared is not None:
                    actual = dict(zip(units, mapping.counts(entry["name"]), strict=True))
                    if {k: int(v) for k, v in declared.items()} != actual:
                        raise MappingError(
                            f"{source}: layer {entry['name']!r} declares channels "
                            f"{declared} but its assignment gives {actual}"
                        )
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise MappingError(f"{source}: malformed mapping JSON ({err!r})") from None
        return mapping

    @classmethod
    def load(cls, path: str | Path) -> Mapping:
        path = Path(path)
        if not path.is_file():
            raise MappingError(f"mapping file {path} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise MappingError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
        return cls.from_json(data, source=str(path))

    def check(self, geometry: list[LayerGeometry], platform: Platform) -> None:
        """Raise MappingError unless this mapping fits the network and the platform exactly."""
        if self.platform != platform.name or self.units != platform.unit_names:
            raise MappingError(
                f"mapping is for {self.platform} {list(self.units)}, the network "
                f"for {platform.name} {list(platform.unit_names)}"
            )
        names = [g.name for g in geometry]
        missing = [n for n in names if n not in self.layers]
        extra = [n for n in self.layers if n not in names]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing layers {missing[:3]}{'...' if len(missing) > 3 else ''}")
            if extra:
                parts.append(f"unknown layers {extra[:3]}{'...' if len(extra) > 3 else ''}")
            raise MappingError("mapping does not fit the network: " + "; ".join(parts))
        for g in geometry:
            if len(self.layers[g.name]) != g.c_out:
                raise MappingError(
                    f"mapping gives layer {g.name!r} {len(self.layers[g.name])} "
                    f"channels, the network has {g.c_out}"
                )
            allowed = platform.allowed_units(g)
            bad = {self.units[a] for a in self.layers[g.name] if not allowed[a]}
            if bad:
                raise MappingError(
                    f"layer {g.name!r} (groups={g.groups}) cannot run on {sorted(bad)}"
                )

    def ordered(self, names: list[str]) -> Mapping:
        """The same mapping with its layers in the given (execution) order."""
        return Mapping(self.platform, self.units, {n: self.layers[n] for n in names})


def quant_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every quantized conv of a model by name (in registration order)."""
    from odimo.nn.conv import QuantConv2d

    return {n: m for n, m in model.named_modules() if isinstance(m, QuantConv2d)}


def model_mapping(model: nn.Module, platform: Platform, order: list[str] | None = None) -> Mapping:
    """The hard mapping of a search or mapped model (argmax of α; ties to the first unit)."""
    layers = quant_layers(model)
    names = order if order is not None else list(layers)
    return Mapping(
        platform=platform.name,
        units=platform.unit_names,
        layers={n: tuple(int(a) for a in layers[n].hard_assignment().tolist()) for n in names},
    )


@torch.no_grad()
def apply_mapping(model: nn.Module, mapping: Mapping, margin: float = 1.0) -> None:
    """Set every quantized conv of `model` to `mapping`.

    Mapped convs take the assignment; search convs get α encoding it (the assigned unit's logit
    `margin` above the others), so their argmax — and hard cost — is exactly the mapping.
    """
    from odimo.nn.conv import MappedConv2d, SearchConv2d

    layers = quant_layers(model)
    missing = [n for n in layers if n not in mapping.layers]
    if missing:
        raise MappingError(f"mapping has no entry for layers {missing[:3]}")
    for name, layer in layers.items():
        assignment = torch.tensor(mapping.layers[name], dtype=torch.long)
        if len(assignment) != layer.out_channels:
            raise MappingError(
                f"mapping gives layer {name!r} {len(assignment)} channels, "
                f"the network has {layer.out_channels}"
            )
        if isinstance(layer, MappedConv2d):
            try:
                layer.set_assignment(assignment)
            except ValueError as err:
                raise MappingError(f"layer {name!r}: {err}") from None
        elif isinstance(layer, SearchConv2d):
            bad = sorted(set(assignment.tolist()) - set(layer.allowed_units))
            if bad:  # α would be masked there: the argmax would silently differ from the mapping
                names = [
                    layer.platform.unit_names[u] if 0 <= u < layer.platform.num_units else str(u)
                    for u in bad
                ]
                raise MappingError(
                    f"layer {name!r}: units {names} cannot run this conv (groups={layer.groups})"
                )
            one_hot = torch.nn.functional.one_hot(assignment, layer.alpha.shape[0]).T
            layer.alpha.copy_(one_hot.to(layer.alpha) * margin)
