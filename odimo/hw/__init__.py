# SPDX-License-Identifier: Apache-2.0
"""Platform descriptions: compute units and vectorised cost models (pure torch)."""

from odimo.hw.diana import Diana
from odimo.hw.geometry import GeometryTable, LayerGeometry, record_geometry
from odimo.hw.platform import ComputeUnit, CostBreakdown, Platform, counts_from_assignment

PLATFORMS: dict[str, type[Platform]] = {"diana": Diana}


def get_platform(name: str = "diana", **kwargs) -> Platform:
    """Platform instance by name."""
    if name not in PLATFORMS:
        from odimo.errors import ConfigError

        raise ConfigError(f"unknown platform {name!r} (choose from: {', '.join(PLATFORMS)})")
    return PLATFORMS[name](**kwargs)


__all__ = [
    "PLATFORMS",
    "ComputeUnit",
    "CostBreakdown",
    "Diana",
    "GeometryTable",
    "LayerGeometry",
    "Platform",
    "counts_from_assignment",
    "get_platform",
    "record_geometry",
]
