# SPDX-License-Identifier: Apache-2.0
"""The Pareto task: read a finished sweep, find its accuracy-vs-cost fronts, pick and plot.

The analysis is `odimo.analysis.sweep_fronts` (sweep mode) and `odimo.analysis.catalogue_fronts`
(catalogue mode, `odimo.tasks.pareto_catalogue`). Outputs in `out_dir`: pareto.csv,
selection.json, budgets.csv, pareto_latency.png, pareto_energy.png.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from omegaconf import DictConfig, OmegaConf

from odimo.analysis.plots import plot_front
from odimo.analysis.sweep import MAX_JOB_DEPTH, SweepScan, scan_cascades, scan_sweep
from odimo.analysis.sweep_fronts import (
    BUDGET_COLUMNS,
    CRITERIA,
    CRITERION,
    CSV_COLUMNS,
    FRONTS,
    analyse_sweep,
    front_criterion,
    job_rows,
    paired_test_column,
    platform_groups,
    sweep_selection,
)
from odimo.errors import ConfigError, OdimoError
from odimo.io import json_safe, write_json, write_records_csv
from odimo.tasks.pareto_catalogue import run_catalogue

__all__ = ["CSV_COLUMNS", "run"]


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
    accuracy: str = "auto"


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
        accuracy=str(cfg.get("accuracy") or "auto"),
    )


def _fmt(value: float, scale: float = 1.0, spec: str = ".2f") -> str:
    """A number for the printed table, `-` when missing."""
    return "-" if value is None or not math.isfinite(value) else format(value * scale, spec)


def print_table(
    rows: list[dict[str, Any]], scan: SweepScan, sweep_dir: Path, criterion: str = CRITERION
) -> None:
    """Print one line per job: label, val/test accuracy (`criterion`'s), latency, energy, front
    flags."""
    test_col = paired_test_column(criterion)
    width = max([len("label")] + [len(row["label"]) for row in rows])
    print(f"{len(rows)} finished jobs in {sweep_dir}")
    print(f"{'label':<{width}}  {'val %':>6}  {'test %':>6}  {'lat ms':>9}  {'E µJ':>9}  front")
    for row in rows:
        flags = ("L" if row["on_front_latency"] else "-") + ("E" if row["on_front_energy"] else "-")
        flags += " *" if row["selected"] else ""
        flags += " C" if row["kind"] == "cascade" else ""
        print(
            f"{row['label']:<{width}}  {_fmt(row[criterion], 100):>6}  "
            f"{_fmt(row[test_col], 100):>6}  {_fmt(row['latency_ms'], 1, '.4g'):>9}  "
            f"{_fmt(row['energy_uj'], 1, '.4g'):>9}  {flags}"
        )
    print(
        "front: L = latency, E = energy; * = selected (latency front); C = cascade "
        "(held-out val accuracy, expected cost)"
    )
    arithmetic = sorted({str(j.get("final/accuracy_arithmetic")) for j in scan.jobs})
    if criterion == CRITERIA["chip"]:
        print(
            "accuracy: acc_chip_mean of the deployed network, the mean over the runs' seeded "
            "read-out noise draws (accuracy=hard: the noiseless read-out)"
        )
    else:
        print(
            f"accuracy: acc_hard of the deployed network, analog arithmetic "
            f"{'/'.join(arithmetic)} (chip_adc: noiseless 6-bit read-out; ideal: exact sums; "
            "None: run before the ADC)"
        )
    if scan.skipped:
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(scan.skip_counts().items()))
        print(f"skipped {len(scan.skipped)} jobs: {counts}")


def print_hypervolumes(fronts: dict[str, dict[str, Any]]) -> None:
    """One line per cost: hypervolume of single networks, cascades and both (same reference)."""
    for name, front in fronts.items():
        hv = front["hypervolume_by_kind"]
        print(
            f"hypervolume ({name}, log10 cost × acc): single networks {hv['single']:.4g}, "
            f"cascades {hv['cascade']:.4g}, together {hv['all']:.4g}"
        )


def _import_wandb() -> ModuleType:
    """Import wandb only when it is asked for."""
    try:
        import wandb
    except ImportError as err:
        raise ConfigError("report_to=wandb needs the wandb package: pip install wandb") from err
    return wandb


def log_to_wandb(
    wandb: ModuleType,
    opts: ParetoOptions,
    rows: list[dict[str, Any]],
    outputs: dict[str, Any],
    criterion: str = CRITERION,
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
        config={"sweep_dir": str(opts.sweep_dir), "k": opts.k, "criterion": criterion},
    )
    table = wandb.Table(
        columns=list(CSV_COLUMNS), data=[[json_safe(row[c]) for c in CSV_COLUMNS] for row in rows]
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
    opts: ParetoOptions,
    rows: list[dict[str, Any]],
    fronts: dict[str, dict[str, Any]],
    criterion: str = CRITERION,
) -> dict[str, Any]:
    """Write pareto.csv, selection.json, budgets.csv and the two plots; return their paths."""
    out = opts.out_dir
    out.mkdir(parents=True, exist_ok=True)
    budget_rows = [b for f in fronts.values() for b in f["budgets"]]
    paths = {
        "out_dir": out,
        "pareto_csv": write_records_csv(out / "pareto.csv", CSV_COLUMNS, rows),
        "selection_json": write_json(
            out / "selection.json",
            sweep_selection(rows, fronts, opts.k, criterion),
            2,
            ensure_ascii=False,
        ),
        "budgets_csv": write_records_csv(out / "budgets.csv", BUDGET_COLUMNS, budget_rows),
    }
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
            acc_key=criterion,
            test_key=paired_test_column(criterion),
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
        return run_catalogue(cfg)
    opts = parse_options(cfg)
    scan = scan_sweep(opts.sweep_dir)
    if not scan.jobs:
        detail = ", ".join(f"{n} {r}" for r, n in sorted(scan.skip_counts().items())) or "none"
        raise OdimoError(
            f"no finished jobs under {opts.sweep_dir} (looked for metrics.json with a DONE marker "
            f"up to {MAX_JOB_DEPTH} levels down; skipped: {detail})"
        )
    groups = platform_groups(scan.jobs)
    if len(groups) > 1 and not cfg.get("group_by_platform", False):
        raise OdimoError(
            f"the sweep's jobs were costed on {len(groups)} platforms ({', '.join(groups)}): "
            "one front would mix cost models; group_by_platform=true builds one per platform"
        )
    if len(groups) > 1:
        return {
            key: analyse_jobs(
                replace(opts, out_dir=opts.out_dir / key.replace("@", "_")),
                replace(scan, jobs=jobs),
                with_cascades=False,
            )
            for key, jobs in groups.items()
        }
    return analyse_jobs(opts, scan)


def analyse_jobs(opts: ParetoOptions, scan: SweepScan, with_cascades: bool = True) -> dict:
    """Fronts, selection, budgets, plots and the table of the finished jobs of `scan`."""
    wandb = _import_wandb() if opts.logger == "wandb" else None
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    # cascades of two of the sweep's networks (tasks/cascade.py outputs inside the sweep dir)
    cascades = scan_cascades(opts.sweep_dir) if with_cascades else []
    rows = job_rows(scan.jobs + cascades, opts.sweep_dir)
    criterion = front_criterion(rows, opts.accuracy)
    fronts = analyse_sweep(rows, opts.k, opts.budgets, opts.hv_refs, criterion)
    outputs: dict[str, Any] = write_outputs(opts, rows, fronts, criterion)
    outputs.update(
        n_jobs=len(rows),
        n_skipped=len(scan.skipped),
        skipped=scan.skip_counts(),
        n_off_front=sum(1 for job in scan.jobs if job["missing"]),
        n_front_latency=fronts["latency"]["n_front"],
        n_front_energy=fronts["energy"]["n_front"],
        n_selected=len(fronts["latency"]["selected"]),
        hypervolume_log10cost={name: front["hypervolume"] for name, front in fronts.items()},
        hypervolume_by_kind_log10cost={n: f["hypervolume_by_kind"] for n, f in fronts.items()},
        criterion=criterion,
    )
    print_table(rows, scan, opts.sweep_dir, criterion)
    print_hypervolumes(fronts)
    print(f"wrote pareto.csv, selection.json, budgets.csv and 2 plots to {opts.out_dir}")
    if wandb is not None:
        log_to_wandb(wandb, opts, rows, outputs, criterion)
    return outputs
