# SPDX-License-Identifier: Apache-2.0
"""Pareto analysis of a finished sweep (the sweep mode of the Pareto task).

Fronts are computed over ALL finished jobs (search points and baselines together), one for
latency and one for energy, on VALIDATION accuracy; test accuracy is only reported. Each front
gives its representatives, the best job under each budget and its hypervolume.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from odimo.analysis.pareto import (
    best_under_budgets,
    default_budgets,
    hypervolume,
    non_dominated,
    select_representatives,
)
from odimo.errors import ConfigError

log = logging.getLogger(__name__)

CRITERION = "val_acc_hard"
#: Front criterion per `accuracy` setting: the noiseless deployed network, or its mean under the
#: read-out noise (runs on a platform whose analog core has an ADC).
CRITERIA = {"hard": "val_acc_hard", "chip": "val_acc_chip"}
#: Settings of `accuracy` (auto: `chip` when every network of the sweep has it, else `hard`).
ACCURACY_SETTINGS = ("auto", *CRITERIA)
#: Columns of pareto.csv, in order.
CSV_COLUMNS = (
    "label",
    "kind",
    "baseline",
    "reg",
    "strength",
    "val_acc_hard",
    "test_acc_hard",
    "val_acc_chip",
    "test_acc_chip",
    "latency_ms",
    "latency_cycles",
    "energy_uj",
    "cheap_frac",
    "on_front_latency",
    "on_front_energy",
    "selected",
    "job_dir",
)
#: Columns of budgets.csv, in order.
BUDGET_COLUMNS = (
    "metric",
    "budget",
    "label",
    "cost",
    "val_acc_hard",
    "test_acc_hard",
    "val_acc_chip",
    "test_acc_chip",
)
#: pareto.csv column <- metrics.json key.
METRIC_KEYS = {
    "val_acc_hard": "final/val/acc_hard",
    "test_acc_hard": "final/test/acc_hard",
    "val_acc_chip": "final/val/acc_chip_mean",
    "test_acc_chip": "final/test/acc_chip_mean",
    "latency_ms": "final/cost/latency_hard_ms",
    "latency_cycles": "final/cost/latency_hard_cycles",
    "energy_uj": "final/cost/energy_hard_uj",
    "cheap_frac": "final/arch/cheap_frac",
}
#: The two fronts: name -> (cost column, axis label, budgets config key, hypervolume ref key).
FRONTS = {
    "latency": ("latency_ms", "latency (ms)", "latency_budgets_ms", "hypervolume_ref_latency_ms"),
    "energy": ("energy_uj", "energy (µJ)", "energy_budgets_uj", "hypervolume_ref_energy_uj"),
}
DEFAULT_BUDGET_COUNT = 5
#: Default hypervolume reference cost = this factor × the largest observed cost.
DEFAULT_REF_FACTOR = 2.0


def _relative(job_dir: str, sweep_dir: Path) -> str:
    """Job dir relative to the sweep dir (posix), absolute when it lies elsewhere."""
    try:
        return Path(job_dir).relative_to(sweep_dir).as_posix() or "."
    except ValueError:
        return job_dir


def job_rows(jobs: list[dict[str, Any]], sweep_dir: Path) -> list[dict[str, Any]]:
    """One pareto.csv row per job (flags still False), search jobs first, by reg and strength.

    A cost that is not > 0 cannot sit on a log axis: it becomes NaN, with a warning.
    """
    rows = []
    for job in jobs:
        row = {
            "label": job["label"],
            "kind": job["kind"],
            "baseline": job["baseline"],
            "reg": job["reg"],
            "strength": job["strength"],
            **{col: _number(job.get(key)) for col, key in METRIC_KEYS.items()},
            "on_front_latency": False,
            "on_front_energy": False,
            "selected": False,
            "job_dir": _relative(job["job_dir"], sweep_dir),
        }
        for col in ("latency_ms", "energy_uj"):
            if math.isfinite(row[col]) and row[col] <= 0:
                log.warning(
                    "job %s has %s = %g <= 0: kept off the fronts", job["job_dir"], col, row[col]
                )
                row[col] = math.nan
        rows.append(row)

    def order(row: dict[str, Any]) -> tuple:
        strength = row["strength"] if math.isfinite(row["strength"]) else math.inf
        return (
            row["kind"] == "baseline",
            str(row["reg"]),
            strength,
            str(row["baseline"]),
            row["label"],
        )

    return sorted(rows, key=order)


def _number(value: Any) -> float:
    """A metric value as a float, NaN when it is missing (cascades carry no chip accuracy)."""
    return math.nan if value is None else float(value)


def front_criterion(rows: list[dict[str, Any]], accuracy: str) -> str:
    """The accuracy column the fronts maximise: `accuracy` hard | chip, or auto: the chip
    accuracy (under read-out noise) when every network of the sweep has one, else hard.
    Raises ConfigError for `chip` when some network has none (one line naming a job)."""
    if accuracy not in ACCURACY_SETTINGS:
        raise ConfigError(f"accuracy={accuracy!r} is not one of: {', '.join(ACCURACY_SETTINGS)}")
    singles = [row for row in rows if row["kind"] != "cascade"]
    lacking = [row["label"] for row in singles if not math.isfinite(row["val_acc_chip"])]
    if accuracy == "auto":
        return CRITERIA["chip" if singles and not lacking else "hard"]
    if accuracy == "chip" and lacking:
        raise ConfigError(
            f"accuracy=chip: {len(lacking)} jobs have no accuracy under read-out noise (e.g. "
            f"{lacking[0]}: run on a platform without the ADC or eval.noise_draws=0); use "
            "accuracy=hard"
        )
    return CRITERIA[accuracy]


def paired_test_column(criterion: str) -> str:
    """The test-split column reported beside the validation criterion (`val_acc_chip` ->
    `test_acc_chip`)."""
    return criterion.replace("val_", "test_", 1)


def _column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    """A float column of the rows."""
    return np.array([row[key] for row in rows], dtype=float)


def hypervolume_by_kind(
    rows: list[dict[str, Any]], cost: np.ndarray, acc: np.ndarray, ref_cost: float
) -> dict[str, float]:
    """Hypervolume of the single networks, of the cascades and of both together, against one
    reference, so that what the cascades add to the system's front is their difference."""
    cascade = np.array([row["kind"] == "cascade" for row in rows], dtype=bool)
    return {
        "single": hypervolume(cost[~cascade], acc[~cascade], ref_cost),
        "cascade": hypervolume(cost[cascade], acc[cascade], ref_cost),
        "all": hypervolume(cost, acc, ref_cost),
    }


def analyse_front(
    rows: list[dict[str, Any]],
    name: str,
    k: int,
    budgets: list[float] | None,
    ref_cost: float | None,
    criterion: str = CRITERION,
) -> dict[str, Any]:
    """Front, representatives, budget table and hypervolume of one cost over the accuracy column
    `criterion`; sets the row flags."""
    cost_col = FRONTS[name][0]
    cost, acc = _column(rows, cost_col), _column(rows, criterion)
    front = non_dominated(cost, acc)
    for row, flag in zip(rows, front, strict=True):
        row[f"on_front_{name}"] = bool(flag)
    chosen = select_representatives(cost, acc, front, k)
    valid = np.isfinite(cost) & np.isfinite(acc)
    if budgets is None:
        budgets = default_budgets(cost, acc, DEFAULT_BUDGET_COUNT)
    if ref_cost is None:
        ref_cost = DEFAULT_REF_FACTOR * float(cost[valid].max()) if valid.any() else 1.0
    budget_rows = []
    for hit in best_under_budgets(cost, acc, budgets):
        row = rows[hit["index"]] if hit["index"] is not None else None
        budget_rows.append(
            {
                "metric": name,
                "budget": hit["budget"],
                "label": row["label"] if row else None,
                "cost": hit["cost"],
                **{col: row[col] if row else None for col in BUDGET_COLUMNS[4:]},
            }
        )
    return {
        "selected": chosen,
        "budgets": budget_rows,
        "hypervolume": hypervolume(cost, acc, ref_cost),
        "hypervolume_by_kind": hypervolume_by_kind(rows, cost, acc, ref_cost),
        "ref_cost": ref_cost,
        "n_front": int(front.sum()),
    }


def analyse_sweep(
    rows: list[dict[str, Any]],
    k: int,
    budgets: dict[str, list[float] | None],
    hv_refs: dict[str, float | None],
    criterion: str = CRITERION,
) -> dict[str, dict[str, Any]]:
    """Both fronts of the rows (flags set in place); the latency choice marks `selected`."""
    fronts = {
        name: analyse_front(rows, name, k, budgets[name], hv_refs[name], criterion)
        for name in FRONTS
    }
    for i in fronts["latency"]["selected"]:
        rows[i]["selected"] = True
    return fronts


def sweep_selection(
    rows: list[dict[str, Any]],
    fronts: dict[str, dict[str, Any]],
    k: int,
    criterion: str = CRITERION,
) -> dict[str, Any]:
    """The content of selection.json: the chosen rows per front and the hypervolumes."""
    return {
        "k": k,
        "criterion": criterion,
        # Membership in these lists is the selection; the rows' own `selected` flag is dropped
        # because in pareto.csv it only marks the latency choice.
        **{
            name: [{k: v for k, v in rows[i].items() if k != "selected"} for i in front["selected"]]
            for name, front in fronts.items()
        },
        "hypervolume_log10cost": {name: front["hypervolume"] for name, front in fronts.items()},
        "hypervolume_by_kind_log10cost": {
            name: front["hypervolume_by_kind"] for name, front in fronts.items()
        },
        "hypervolume_ref": {
            **{FRONTS[name][0]: front["ref_cost"] for name, front in fronts.items()},
            "acc": 0.0,
        },
    }


def platform_groups(jobs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Jobs by the platform that costed them (`name@fingerprint`); jobs without a record join
    the only group, or their own `unknown` group when there are several."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        if job.get("platform"):
            groups.setdefault(job["platform"], []).append(job)
    unknown = [job for job in jobs if not job.get("platform")]
    if len(groups) <= 1:
        return {next(iter(groups), "unknown"): [*sum(groups.values(), []), *unknown]}
    if unknown:
        groups["unknown"] = unknown
    return groups
