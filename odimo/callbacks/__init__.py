# SPDX-License-Identifier: Apache-2.0
"""Callbacks: temperature schedule, cost/mapping logging, mapping hand-over, loss guard."""

from odimo.callbacks.search import (
    CostLogger,
    FiniteLossGuard,
    MappingHandover,
    MappingMedia,
    TemperatureSchedule,
    load_module_state,
)

__all__ = [
    "CostLogger",
    "FiniteLossGuard",
    "MappingHandover",
    "MappingMedia",
    "TemperatureSchedule",
    "load_module_state",
]
