# SPDX-License-Identifier: Apache-2.0
"""The Pareto task: read a finished sweep, find its accuracy-vs-cost fronts, pick and plot.

Fronts are computed over ALL finished jobs (search points and baselines together), one for
latency and one for energy, on VALIDATION accuracy; test accuracy is only reported. Outputs in
`out_dir`: pareto.csv, selection.json, budgets.csv, pareto_latency.png, pareto_energy.png.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from odimo.analysis.pareto import (
    best_under_budgets,
    default_budgets,
    hypervolume,
    non_dominated,
    select_representatives,
)
from odimo.analysis.plots import plot_front
from odimo.analysis.sweep import MAX_JOB_DEPTH, SweepScan, scan_cascades, scan_sweep
from odimo.errors import ConfigError, OdimoError

log = logging.getLogger(__name__)

CRITERION = "val_acc_hard"
#: Columns of pareto.csv, in order.
CSV_COLUMNS = (
    "label",
    "kind",
    "baseline",
    "reg",
    "strength",
    "val_acc_hard",
    "test_acc_hard",
    "latency_ms",
    "latency_cycles",
    "energy_uj",
    "analog_frac",
    "on_front_latency",
    "on_front_energy",
    "selected",
    "job_dir",
)
#: Columns of budgets.csv, in order.
BUDGET_COLUMNS = ("metric", "budget", "label", "cost", "val_acc_hard", "test_acc_hard")
#: pareto.csv column <- metrics.json key.
METRIC_KEYS = {
    "val_acc_hard": "final/val/acc_hard",
    "test_acc_hard": "final/test/acc_hard",
    "latency_ms": "final/cost/latency_hard_ms",
    "latency_cycles": "final/cost/latency_hard_cycles",
    "energy_uj": "final/cost/energy_hard_uj",
    "analog_frac": "final/arch/analog_frac",
}
#: The two fronts: name -> (cost column, axis label, budgets config key, hypervolume ref key).
FRONTS = {
    "latency": ("latency_ms", "latency (ms)", "latency_budgets_ms", "hypervolume_ref_latency_ms"),
    "energy": ("energy_uj", "energy (µJ)", "energy_budgets_uj", "hypervolume_ref_energy_uj"),
}
DEFAULT_BUDGET_COUNT = 5
#: Default hypervolume reference cost = this factor × the largest observed cost.
DEFAULT_REF_FACTOR = 2.0


@dataclass(frozen=True)
class ParetoOptions:
    """Validated task settings (see conf/pareto.yaml)."""

    sweep_dir: Path
    out_dir: Path
    k: int
    budgets: dict[str, list[float] | None]
    hv_refs: dict[str, float | None]
    logger: str
    wandb: dict[str, Any]


def _positive_list(cfg: DictConfig, key: str) -> list[float] | None:
    """A list of positive numbers from the config, or None when the key is null."""
    value = cfg.get(key)
    if value is None:
        return None
    value = OmegaConf.to_container(value) if OmegaConf.is_list(value) else value
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} must be null or a non-empty list of numbers > 0, got {value!r}")
    try:
        out = [float(v) for v in value if not isinstance(v, bool)]
    except (TypeError, ValueError):
        out = []
    if len(out) != len(value) or not all(math.isfinite(v) and v > 0 for v in out):
        raise ConfigError(f"{key} must be a list of numbers > 0, got {value!r}")
    return sorted(out)


def _positive_or_none(cfg: DictConfig, key: str) -> float | None:
    """A positive number from the config, or None when the key is null or absent."""
    value = cfg.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{key} must be null or a number > 0, got {value!r}")
    return float(value)


def parse_options(cfg: DictConfig) -> ParetoOptions:
    """Check the config and resolve paths; raise ConfigError with a one-line message."""
    if OmegaConf.is_missing(cfg, "sweep_dir") or cfg.get("sweep_dir") in (None, ""):
        raise ConfigError("sweep_dir is required: python tasks/pareto.py sweep_dir=<sweep dir>")
    sweep_dir = Path(str(cfg.sweep_dir)).expanduser().resolve()
    if not sweep_dir.is_dir():
        raise ConfigError(f"sweep_dir {sweep_dir} is not a directory")
    out_dir = cfg.get("out_dir")
    out_dir = sweep_dir if out_dir in (None, "") else Path(str(out_dir)).expanduser().resolve()
    k = cfg.get("k", 5)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    logger = str(cfg.get("report_to") or "none")
    if logger not in ("none", "wandb"):
        raise ConfigError(f"report_to must be 'none' or 'wandb', got {logger!r}")
    wandb_cfg = cfg.get("wandb")
    wandb_cfg = OmegaConf.to_container(wandb_cfg, resolve=True) if wandb_cfg is not None else {}
    return ParetoOptions(
        sweep_dir=sweep_dir,
        out_dir=out_dir,
        k=k,
        budgets={name: _positive_list(cfg, spec[2]) for name, spec in FRONTS.items()},
        hv_refs={name: _positive_or_none(cfg, spec[3]) for name, spec in FRONTS.items()},
        logger=logger,
        wandb=dict(wandb_cfg),
    )


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
            **{col: job[key] for col, key in METRIC_KEYS.items()},
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


def _column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    """A float column of the rows."""
    return np.array([row[key] for row in rows], dtype=float)


def analyse_front(
    rows: list[dict[str, Any]],
    name: str,
    k: int,
    budgets: list[float] | None,
    ref_cost: float | None,
) -> dict[str, Any]:
    """Front, representatives, budget table and hypervolume of one cost; sets the row flags."""
    cost_col = FRONTS[name][0]
    cost, acc = _column(rows, cost_col), _column(rows, CRITERION)
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
                "val_acc_hard": row["val_acc_hard"] if row else None,
                "test_acc_hard": row["test_acc_hard"] if row else None,
            }
        )
    return {
        "selected": chosen,
        "budgets": budget_rows,
        "hypervolume": hypervolume(cost, acc, ref_cost),
        "ref_cost": ref_cost,
        "n_front": int(front.sum()),
    }


def _cell(value: Any) -> Any:
    """A CSV cell: empty for None/NaN, lower-case booleans."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _json_safe(value: Any) -> Any:
    """Replace NaN/inf by None, recursively (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Path:
    """Write rows as CSV with a header."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([_cell(row.get(col)) for col in columns] for row in rows)
    return path


def _fmt(value: float, scale: float = 1.0, spec: str = ".2f") -> str:
    """A number for the printed table, `-` when missing."""
    return "-" if value is None or not math.isfinite(value) else format(value * scale, spec)


def print_table(rows: list[dict[str, Any]], scan: SweepScan, sweep_dir: Path) -> None:
    """Print one line per job: label, val/test accuracy, latency, energy, front flags."""
    width = max([len("label")] + [len(row["label"]) for row in rows])
    print(f"{len(rows)} finished jobs in {sweep_dir}")
    print(f"{'label':<{width}}  {'val %':>6}  {'test %':>6}  {'lat ms':>9}  {'E µJ':>9}  front")
    for row in rows:
        flags = ("L" if row["on_front_latency"] else "-") + ("E" if row["on_front_energy"] else "-")
        flags += " *" if row["selected"] else ""
        print(
            f"{row['label']:<{width}}  {_fmt(row['val_acc_hard'], 100):>6}  "
            f"{_fmt(row['test_acc_hard'], 100):>6}  {_fmt(row['latency_ms'], 1, '.4g'):>9}  "
            f"{_fmt(row['energy_uj'], 1, '.4g'):>9}  {flags}"
        )
    print("front: L = latency, E = energy; * = selected (latency front)")
    if scan.skipped:
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(scan.skip_counts().items()))
        print(f"skipped {len(scan.skipped)} jobs: {counts}")


def _import_wandb() -> ModuleType:
    """Import wandb only when it is asked for."""
    try:
        import wandb
    except ImportError as err:
        raise ConfigError("report_to=wandb needs the wandb package: pip install wandb") from err
    return wandb


def log_to_wandb(
    wandb: ModuleType, opts: ParetoOptions, rows: list[dict[str, Any]], outputs: dict[str, Any]
) -> None:
    """Log the table, both plots and the hypervolumes as a `pareto` run in the sweep's group.

    `WANDB_MODE` (offline/disabled) is read by wandb itself.
    """
    group = opts.wandb.get("group") or opts.sweep_dir.name
    run = wandb.init(
        project=opts.wandb.get("project") or "odimo",
        entity=opts.wandb.get("entity"),
        group=group,
        job_type="pareto",
        name=f"pareto-{group}",
        config={"sweep_dir": str(opts.sweep_dir), "k": opts.k, "criterion": CRITERION},
    )
    table = wandb.Table(
        columns=list(CSV_COLUMNS), data=[[_json_safe(row[c]) for c in CSV_COLUMNS] for row in rows]
    )
    run.log(
        {
            "pareto/table": table,
            "pareto/latency": wandb.Image(outputs["pareto_latency_png"]),
            "pareto/energy": wandb.Image(outputs["pareto_energy_png"]),
        }
    )
    for name, value in outputs["hypervolume_log10cost"].items():
        run.summary[f"pareto/hypervolume_log10cost_{name}"] = value
    run.finish()


def write_outputs(
    opts: ParetoOptions, rows: list[dict[str, Any]], fronts: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Write pareto.csv, selection.json, budgets.csv and the two plots; return their paths."""
    out = opts.out_dir
    out.mkdir(parents=True, exist_ok=True)
    selection = {
        "k": opts.k,
        "criterion": CRITERION,
        # Membership in these lists is the selection; the rows' own `selected` flag is dropped
        # because in pareto.csv it only marks the latency choice.
        **{
            name: [{k: v for k, v in rows[i].items() if k != "selected"} for i in front["selected"]]
            for name, front in fronts.items()
        },
        "hypervolume_log10cost": {name: front["hypervolume"] for name, front in fronts.items()},
        "hypervolume_ref": {
            **{FRONTS[name][0]: front["ref_cost"] for name, front in fronts.items()},
            "acc": 0.0,
        },
    }
    paths = {
        "out_dir": out,
        "pareto_csv": write_csv(out / "pareto.csv", CSV_COLUMNS, rows),
        "selection_json": out / "selection.json",
        "budgets_csv": write_csv(
            out / "budgets.csv", BUDGET_COLUMNS, [b for f in fronts.values() for b in f["budgets"]]
        ),
    }
    paths["selection_json"].write_text(
        json.dumps(_json_safe(selection), indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        encoding="utf-8",
    )
    for name, (cost_col, cost_label, _, _) in FRONTS.items():
        chosen = set(fronts[name]["selected"])
        plot_rows = [{**row, "selected": i in chosen} for i, row in enumerate(rows)]
        paths[f"pareto_{name}_png"] = plot_front(
            plot_rows,
            cost_col,
            cost_label,
            out / f"pareto_{name}.png",
            front_key=f"on_front_{name}",
            selected_key="selected",
            title=f"{opts.sweep_dir.name}: accuracy vs {name}",
        )
    return {key: str(path) for key, path in paths.items()}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Analyse a finished sweep and write the Pareto outputs.

    Returns:
        Output paths (`pareto_csv`, `selection_json`, `budgets_csv`, `pareto_latency_png`,
        `pareto_energy_png`, `out_dir`), job counts (`n_jobs`, `n_skipped`, `skipped` per reason,
        `n_off_front` for jobs lacking a value, `n_front_latency`, `n_front_energy`,
        `n_selected`) and `hypervolume_log10cost` per cost.

    Raises:
        ConfigError: a bad setting.
        OdimoError: the sweep has no finished job.
    """
    if cfg.get("catalogue"):  # any table of records instead of a sweep (IoTnets catalogues)
        from odimo.tasks.pareto_catalogue import run_catalogue

        return run_catalogue(cfg)
    opts = parse_options(cfg)
    wandb = _import_wandb() if opts.logger == "wandb" else None
    scan = scan_sweep(opts.sweep_dir)
    if not scan.jobs:
        detail = ", ".join(f"{n} {r}" for r, n in sorted(scan.skip_counts().items())) or "none"
        raise OdimoError(
            f"no finished jobs under {opts.sweep_dir} (looked for metrics.json with a DONE marker "
            f"up to {MAX_JOB_DEPTH} levels down; skipped: {detail})"
        )
    # cascades of two of the sweep's networks (tasks/cascade.py outputs inside the sweep dir)
    rows = job_rows(scan.jobs + scan_cascades(opts.sweep_dir), opts.sweep_dir)
    fronts = {
        name: analyse_front(rows, name, opts.k, opts.budgets[name], opts.hv_refs[name])
        for name in FRONTS
    }
    for i in fronts["latency"]["selected"]:
        rows[i]["selected"] = True
    outputs: dict[str, Any] = write_outputs(opts, rows, fronts)
    outputs.update(
        n_jobs=len(rows),
        n_skipped=len(scan.skipped),
        skipped=scan.skip_counts(),
        n_off_front=sum(1 for job in scan.jobs if job["missing"]),
        n_front_latency=fronts["latency"]["n_front"],
        n_front_energy=fronts["energy"]["n_front"],
        n_selected=len(fronts["latency"]["selected"]),
        hypervolume_log10cost={name: front["hypervolume"] for name, front in fronts.items()},
    )
    print_table(rows, scan, opts.sweep_dir)
    print(f"wrote pareto.csv, selection.json, budgets.csv and 2 plots to {opts.out_dir}")
    if wandb is not None:
        log_to_wandb(wandb, opts, rows, outputs)
    return outputs
