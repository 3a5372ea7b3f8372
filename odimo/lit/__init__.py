# SPDX-License-Identifier: Apache-2.0
"""Lightning phases (warm-up, search, fine-tune) and their optimizers."""

from odimo.lit.modules import FinetuneModule, PhaseModule, SearchModule, WarmupModule, step_loss
from odimo.lit.optim import EpochSchedule, MultiOptimizer, make_optimizer, parameter_groups

__all__ = [
    "EpochSchedule",
    "FinetuneModule",
    "MultiOptimizer",
    "PhaseModule",
    "SearchModule",
    "WarmupModule",
    "make_optimizer",
    "parameter_groups",
    "step_loss",
]
