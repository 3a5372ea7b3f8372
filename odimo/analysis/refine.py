# SPDX-License-Identifier: Apache-2.0
"""Where a front needs its next points: target-mode jobs in the largest hypervolume gaps.

The hypervolume (`pareto.hypervolume`) measures cost on a log10 axis. Between two consecutive
front points (x_i, a_i) and (x_{i+1}, a_{i+1}) (x = log10 cost, both coordinates increasing
along the front) the staircase leaves a rectangle of area Δx·Δa undominated: no point placed
between them can add more. If the front between them is the straight line (in log cost), a
point at fraction t of the gap adds (1 − t)·Δx · t·Δa, which is largest at t = 1/2: the
geometric mean of the two costs, adding Δx·Δa/4. With m points spaced evenly on that line the
gap gains Δx·Δa·m / (2(m + 1)), so the (m+1)-th point adds Δx·Δa / (2(m + 1)(m + 2)); giving
each next point to the gap where it adds most is optimal for these concave gains.

Target mode (`reg.target_ms` / `reg.target_uj`) places a job at a cost, so each proposed point
becomes one job whose target is its cost. Gaps outside the front (below its cheapest or above
its most accurate point) are not proposed: the baselines (`min_latency`, `all_digital`) fix
those ends.
"""

from __future__ import annotations

import heapq
import math
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from odimo.analysis.pareto import hypervolume, non_dominated
from odimo.analysis.sweep import scan_sweep
from odimo.errors import ConfigError


@dataclass(frozen=True)
class Gap:
    """The undominated rectangle between two consecutive front points.

    Attributes:
        lo_cost, hi_cost: costs of the cheaper and the dearer point (same unit as the input).
        lo_acc, hi_acc: their accuracies (hi_acc > lo_acc on a front).
        area: Δlog10(cost) × Δacc, the most any point between them can add to the hypervolume.
    """

    lo_cost: float
    hi_cost: float
    lo_acc: float
    hi_acc: float
    area: float


@dataclass(frozen=True)
class Proposal:
    """One target-mode job: its target cost, the gap it fills, its expected hypervolume gain."""

    target: float
    gap: Gap
    expected_gain: float


def front_gaps(cost: ArrayLike, acc: ArrayLike) -> list[Gap]:
    """Gaps between consecutive points of the front of (cost, acc), largest area first.

    Raises:
        ValueError: a front point with a cost that is not > 0 (log axis).
    """
    cost = np.asarray(cost, dtype=float)
    acc = np.asarray(acc, dtype=float)
    mask = non_dominated(cost, acc)
    order = np.argsort(cost[mask], kind="stable")
    fc, fa = cost[mask][order], acc[mask][order]
    if np.any(fc <= 0):
        raise ValueError(f"front costs must be > 0 for a log axis, got {fc[fc <= 0][:3]}")
    gaps = [
        Gap(
            float(fc[i]),
            float(fc[i + 1]),
            float(fa[i]),
            float(fa[i + 1]),
            float(np.log10(fc[i + 1] / fc[i]) * (fa[i + 1] - fa[i])),
        )
        for i in range(len(fc) - 1)
    ]
    return sorted(gaps, key=lambda g: (-g.area, g.lo_cost))


def marginal_gain(area: float, m: int) -> float:
    """Hypervolume the (m+1)-th evenly spaced point adds to a gap of `area` (module doc)."""
    return area / (2 * (m + 1) * (m + 2))


def propose_targets(cost: ArrayLike, acc: ArrayLike, n: int) -> list[Proposal]:
    """The n target costs that add most hypervolume under the straight-line model.

    Each point goes to the gap where it adds most; a gap with m points gets them at equal
    steps of log cost (m = 1: the geometric mean of its two costs). Sorted by target cost.

    Raises:
        ValueError: n < 1, or a front of fewer than two points (no gap to fill).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    gaps = front_gaps(cost, acc)
    if not gaps:
        raise ValueError("the front has fewer than two points: there is no gap to fill")
    counts = [0] * len(gaps)
    heap = [(-marginal_gain(g.area, 0), i) for i, g in enumerate(gaps)]
    heapq.heapify(heap)
    for _ in range(n):
        _, i = heapq.heappop(heap)
        counts[i] += 1
        heapq.heappush(heap, (-marginal_gain(gaps[i].area, counts[i]), i))
    proposals = []
    for gap, m in zip(gaps, counts):
        lo, hi = math.log10(gap.lo_cost), math.log10(gap.hi_cost)
        for j in range(1, m + 1):
            gain = marginal_gain(gap.area, j - 1)
            proposals.append(Proposal(10 ** (lo + (hi - lo) * j / (m + 1)), gap, gain))
    return sorted(proposals, key=lambda p: p.target)


def interpolated_acc(gap: Gap, cost: float) -> float:
    """Accuracy on the straight line (log cost) between a gap's two points."""
    t = math.log10(cost / gap.lo_cost) / math.log10(gap.hi_cost / gap.lo_cost)
    return gap.lo_acc + t * (gap.hi_acc - gap.lo_acc)


#: objective -> (metrics.json cost key, target override key, regularizer the target needs, unit)
OBJECTIVES = {
    "latency": ("final/cost/latency_hard_ms", "reg.target_ms", "latency", "ms"),
    "energy": ("final/cost/energy_hard_uj", "reg.target_uj", "power", "µJ"),
}
#: Overrides a refinement job replaces: the swept strength and any earlier target.
SWEPT_KEYS = ("strength", "reg.target_ms", "reg.target_uj")


@dataclass(frozen=True)
class Refinement:
    """Proposed jobs for a sweep: the front they refine and the command that runs them.

    Attributes:
        objective: latency | energy.
        jobs: finished jobs on which the front was computed.
        proposals: target jobs, cheapest first.
        hypervolume: the front's hypervolume now (log10 cost × val accuracy).
        ref_cost: its reference cost (2 × the largest cost; reference accuracy 0).
        argv: arguments of `train.py` (`-m`, the sweep's overrides, the targets, the sweep dir).
    """

    objective: str
    jobs: int
    proposals: list[Proposal]
    hypervolume: float
    ref_cost: float
    argv: list[str]


def _job_overrides(job_dir: Path) -> tuple[list[str], list[str]]:
    """(task overrides, launcher overrides) a finished job was started with (.hydra/)."""
    import yaml

    hydra_dir = job_dir / ".hydra"
    task = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []
    launcher: list[str] = []
    hydra_yaml = hydra_dir / "hydra.yaml"
    if hydra_yaml.is_file():
        hydra = (yaml.safe_load(hydra_yaml.read_text()) or {}).get("hydra", {})
        given = (hydra.get("overrides") or {}).get("hydra") or []
        launcher = [o for o in given if o.startswith(("hydra/launcher=", "hydra.launcher."))]
    return [str(o) for o in task], [str(o) for o in launcher]


def sweep_argv(job_dir: Path, sweep_dir: Path, key: str, targets: list[float]) -> list[str]:
    """`train.py -m` arguments: a job's own overrides without the swept keys, the targets, and
    the sweep dir (so the new jobs land next to the old ones). A `sweep=` preset keeps its
    regularizer; `strength=0` pins its λ grid (target mode ignores λ)."""
    task, launcher = _job_overrides(job_dir)
    kept = [o for o in task if o.split("=", 1)[0].lstrip("+~") not in SWEPT_KEYS]
    if any(o.startswith("sweep=") for o in kept):
        kept.append("strength=0")
    values = ",".join(f"{t:.4g}" for t in targets)
    return ["-m", *kept, f"{key}={values}", *launcher, f"hydra.sweep.dir={sweep_dir}"]


def plan_refinement(sweep_dir: str | Path, n: int, objective: str | None = None) -> Refinement:
    """Read a finished sweep and propose the n target jobs that fill its front's largest gaps.

    `objective=None` takes the sweep's own regularizer (latency for reg=latency, energy for
    reg=power). Raises `ConfigError` (one line) for a folder that is not a sweep, a sweep
    without finished jobs, n < 1, or a front with no gap.
    """
    sweep_dir = Path(sweep_dir).resolve()
    if not sweep_dir.is_dir():
        raise ConfigError(f"sweep_dir {sweep_dir} is not a folder: give a sweep's folder")
    if n < 1:
        raise ConfigError(f"n must be >= 1 (the number of jobs to propose), got {n}")
    scan = scan_sweep(sweep_dir)
    searched = [j for j in scan.jobs if j["kind"] != "baseline" and j["job_dir"] != str(sweep_dir)]
    if not searched:
        why = f"{len(scan.skipped)} unfinished or failed" if scan.skipped else "no job folders"
        raise ConfigError(
            f"{sweep_dir} holds no finished search job ({why}): run the sweep first "
            "(python train.py -m ...) and refine it when jobs have a DONE marker"
        )
    regs = {j["reg"] for j in searched}
    if objective is None:
        objective = "energy" if regs == {"power"} else "latency"
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be latency or energy, got {objective!r}")
    cost_key, target_key, reg, _ = OBJECTIVES[objective]
    if regs != {reg}:
        raise ConfigError(
            f"objective={objective} places jobs with {target_key}, which needs reg={reg}, but "
            f"this sweep's jobs use reg={sorted(map(str, regs))}: choose the sweep's objective"
        )
    cost = np.array([j[cost_key] for j in scan.jobs], dtype=float)
    acc = np.array([j["final/val/acc_hard"] for j in scan.jobs], dtype=float)
    try:
        proposals = propose_targets(cost, acc, n)
    except ValueError as err:
        raise ConfigError(f"cannot refine {sweep_dir}: {err}") from None
    ref_cost = 2 * float(np.nanmax(cost))
    targets = [p.target for p in proposals]
    return Refinement(
        objective,
        len(scan.jobs),
        proposals,
        hypervolume(cost, acc, ref_cost),
        ref_cost,
        sweep_argv(Path(searched[0]["job_dir"]), sweep_dir, target_key, targets),
    )


def command_line(argv: list[str], train_py: str = "train.py") -> str:
    """The shell command that runs `argv` (each argument quoted where the shell needs it)."""
    return " ".join(shlex.quote(a) for a in ["python", train_py, *argv])


def launch(argv: list[str], train_py: Path) -> int:
    """Run `train.py -m ...` through Hydra's configured launcher; its exit status."""
    return subprocess.run([sys.executable, str(train_py), *argv], check=False).returncode
