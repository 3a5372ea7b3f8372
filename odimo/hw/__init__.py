# SPDX-License-Identifier: Apache-2.0
"""Platform descriptions: compute units and vectorised cost models (pure torch)."""

from odimo.hw.config import (
    PLATFORMS,
    get_platform,
    load_platform_yaml,
    platform_from_config,
    platform_identity,
    platform_key,
    platform_of_record,
    platform_to_config,
    user_platform_dir,
    with_analog,
)
from odimo.hw.darkside import Darkside, DarksideConstants
from odimo.hw.diana import Diana, DianaConstants
from odimo.hw.geometry import GeometryTable, LayerGeometry, record_geometry
from odimo.hw.linear import LinearConstants, LinearPlatform
from odimo.hw.platform import ComputeUnit, CostBreakdown, Platform, counts_from_assignment

#: `get_platform` also accepts a platform config; this name reads better at config call sites.
load_platform = get_platform


__all__ = [
    "PLATFORMS",
    "ComputeUnit",
    "CostBreakdown",
    "Darkside",
    "DarksideConstants",
    "Diana",
    "DianaConstants",
    "GeometryTable",
    "LayerGeometry",
    "LinearConstants",
    "LinearPlatform",
    "Platform",
    "counts_from_assignment",
    "get_platform",
    "load_platform",
    "load_platform_yaml",
    "platform_from_config",
    "platform_identity",
    "platform_key",
    "platform_of_record",
    "platform_to_config",
    "record_geometry",
    "with_analog",
    "user_platform_dir",
]
