# SPDX-License-Identifier: Apache-2.0
"""Platform descriptions: compute units and vectorised cost models (pure torch)."""

from odimo.hw.config import (
    PLATFORMS,
    get_platform,
    load_platform_yaml,
    platform_from_config,
    platform_to_config,
    with_analog,
)
from odimo.hw.diana import Diana, DianaConstants
from odimo.hw.geometry import GeometryTable, LayerGeometry, record_geometry
from odimo.hw.platform import ComputeUnit, CostBreakdown, Platform, counts_from_assignment

#: `get_platform` also accepts a platform config; this name reads better at config call sites.
load_platform = get_platform


__all__ = [
    "PLATFORMS",
    "ComputeUnit",
    "CostBreakdown",
    "Diana",
    "DianaConstants",
    "GeometryTable",
    "LayerGeometry",
    "Platform",
    "counts_from_assignment",
    "get_platform",
    "load_platform",
    "load_platform_yaml",
    "platform_from_config",
    "platform_to_config",
    "record_geometry",
    "with_analog",
]
