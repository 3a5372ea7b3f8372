# SPDX-License-Identifier: Apache-2.0
"""Front refinement task: the k target-mode jobs that fill a finished sweep's largest gaps."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from odimo.analysis.refine import OBJECTIVES, command_line, launch, plan_refinement
from odimo.errors import ConfigError, OdimoError

TRAIN_PY = Path(__file__).resolve().parents[2] / "train.py"


def run(cfg: DictConfig) -> dict:
    """Print the front's gaps and the `train.py -m` command; with `run=true`, launch it."""
    if not isinstance(cfg.n, int):
        raise ConfigError(f"n must be an integer >= 1, got {cfg.n!r}")
    plan = plan_refinement(cfg.sweep_dir, cfg.n, cfg.objective)
    unit = OBJECTIVES[plan.objective][3]
    print(
        f"{plan.jobs} finished jobs; {plan.objective} front hypervolume {plan.hypervolume:.4f} "
        f"(log10 {unit} × val accuracy, reference {plan.ref_cost:.4g} {unit} and accuracy 0)"
    )
    for p in plan.proposals:
        g = p.gap
        print(
            f"  target {p.target:.4g} {unit}: gap {g.lo_cost:.4g}-{g.hi_cost:.4g} {unit}, "
            f"val acc {g.lo_acc:.4f}-{g.hi_acc:.4f}, expected gain {p.expected_gain:.4f}"
        )
    print(command_line(plan.argv))
    status = None
    if cfg.run:
        status = launch(plan.argv, TRAIN_PY)
        if status != 0:
            raise OdimoError(f"the refinement jobs stopped with exit status {status} (see above)")
    return {
        "objective": plan.objective,
        "hypervolume": plan.hypervolume,
        "targets": [p.target for p in plan.proposals],
        "argv": plan.argv,
        "status": status,
    }
