# SPDX-License-Identifier: Apache-2.0
"""Analysis of finished runs and sweeps: Pareto fronts, selection, sweep collection, plots.

`pareto` is pure numpy; `plots` needs matplotlib (imported only when used).
"""

from odimo.analysis.pareto import (
    best_under_budgets,
    hypervolume,
    log_spaced,
    non_dominated,
    select_representatives,
)
from odimo.analysis.sweep import SweepScan, collect_jobs, scan_sweep

__all__ = [
    "SweepScan",
    "best_under_budgets",
    "collect_jobs",
    "hypervolume",
    "log_spaced",
    "non_dominated",
    "scan_sweep",
    "select_representatives",
]
