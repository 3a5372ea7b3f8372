# SPDX-License-Identifier: Apache-2.0
"""Callbacks: the search's schedules (temperature, α warm-up, λ ramp), cost/mapping logging,
the mapping hand-over, the loss guard."""

from odimo.callbacks.search import (
    AlphaWarmup,
    CostLogger,
    FiniteLossGuard,
    MappingHandover,
    MappingMedia,
    StrengthRamp,
    TemperatureSchedule,
    load_module_state,
    search_schedules,
)

__all__ = [
    "AlphaWarmup",
    "CostLogger",
    "FiniteLossGuard",
    "MappingHandover",
    "MappingMedia",
    "StrengthRamp",
    "TemperatureSchedule",
    "load_module_state",
    "search_schedules",
]
