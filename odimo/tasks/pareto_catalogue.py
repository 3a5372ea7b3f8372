# SPDX-License-Identifier: Apache-2.0
"""Catalogue mode of the Pareto task: `python tasks/pareto.py catalogue=<csv|json> x=<cols>
y=<col> name=<col> [budgets=[...]] [proxy=<col>] [family=<col>] output_dir=<dir>`.

Writes `pareto.csv` (every input row, its columns kept, plus `on_front_<x>` and `selected_<x>`
per cost column), `budgets.csv`, `selection.json` (selected names, front sizes, overlap, rank
correlations, proxy fits), `proxy_regret.csv` when a proxy is given, `pareto_catalogue.png`, and
`candidates.sh` (the train.py multiruns of the selected networks) when the names are sampled
network keys `<space>/<law>/<id>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from odimo.analysis.catalogue_fronts import (
    analyse,
    catalogue_selection,
    check_columns,
    flag_rows,
    load_table,
    plot_catalogue,
)
from odimo.characterization.candidates import parse_key, train_commands
from odimo.errors import ConfigError
from odimo.io import atomic_write_text, write_json, write_records_csv


@dataclass(frozen=True)
class CatalogueOptions:
    """Validated settings of the catalogue mode (see conf/pareto.yaml)."""

    path: Path
    x: list[str]
    y: str
    name: str
    k: int
    budgets: dict[str, list[float] | None]
    proxy: str | None
    family: str | None
    out_dir: Path


def _budgets(value: Any, x: list[str]) -> dict[str, list[float] | None]:
    """null, one list for every cost column, or a mapping column -> list; numbers > 0."""
    if value is None:
        return dict.fromkeys(x)
    value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    per_col = value if isinstance(value, dict) else dict.fromkeys(x, value)
    out: dict[str, list[float] | None] = dict.fromkeys(x)
    for col, budgets in per_col.items():
        ok = (
            isinstance(budgets, list)
            and budgets
            and all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and b > 0 for b in budgets
            )
        )
        if col not in x or not ok:
            raise ConfigError(
                f"budgets must be a list of numbers > 0 or a mapping from an x column to one, "
                f"got {value!r}"
            )
        out[col] = sorted(float(b) for b in budgets)
    return out


def parse_options(cfg: DictConfig) -> CatalogueOptions:
    """Check the catalogue-mode keys; ConfigError with one line otherwise."""
    path = Path(str(cfg.catalogue)).expanduser()
    x = cfg.get("x")
    x = OmegaConf.to_container(x) if OmegaConf.is_list(x) else ([x] if x else [])
    if not x or not all(isinstance(c, str) for c in x):
        raise ConfigError("catalogue mode needs x=<cost column> or x=[<col>,<col>,...]")
    for key in ("y", "name"):
        if not cfg.get(key):
            raise ConfigError(f"catalogue mode needs {key}=<column>")
    k = cfg.get("k", 5)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    out = cfg.get("output_dir") or cfg.get("out_dir")
    out_dir = Path(str(out)) if out else (path.parent if path.is_file() else path) / "pareto"
    return CatalogueOptions(
        path=path,
        x=list(x),
        y=str(cfg.y),
        name=str(cfg.name),
        k=k,
        budgets=_budgets(cfg.get("budgets"), list(x)),
        proxy=str(cfg.proxy) if cfg.get("proxy") else None,
        family=str(cfg.family) if cfg.get("family") else None,
        out_dir=out_dir.expanduser().resolve(),
    )


def write_outputs(opts: CatalogueOptions, rows: list[dict], result: dict) -> dict[str, str]:
    """pareto.csv, budgets.csv, selection.json, proxy_regret.csv and the plot."""
    out = opts.out_dir
    out.mkdir(parents=True, exist_ok=True)
    flagged = flag_rows(rows, result)
    paths = {"pareto_csv": write_records_csv(out / "pareto.csv", _columns(flagged), flagged)}
    budget_rows = [
        {"cost_column": c, **b} for c, f in result["fronts"].items() for b in f["budgets"]
    ]
    paths["budgets_csv"] = write_records_csv(
        out / "budgets.csv", ["cost_column", "budget", "name", "cost", "y"], budget_rows
    )
    selection = {
        "catalogue": str(opts.path),
        **catalogue_selection(rows, result, opts.x, opts.y, opts.name, opts.k),
    }
    if "proxy" in result:
        selection["proxy"] = {
            "column": opts.proxy,
            "family": opts.family,
            "fits_log10": result["proxy"]["fits_log10"],
        }
        regret = result["proxy"]["rows"]
        paths["proxy_regret_csv"] = write_records_csv(
            out / "proxy_regret.csv", _columns(regret), regret
        )
    paths["selection_json"] = write_json(out / "selection.json", selection)
    keys = list(dict.fromkeys(s["name"] for sel in selection["selected"].values() for s in sel))
    if keys and all(parse_key(k) for k in keys):
        lines = [f'{cmd}"$@"' for cmd in train_commands(keys, [])]
        paths["candidates_sh"] = out / "candidates.sh"
        atomic_write_text(
            paths["candidates_sh"],
            "#!/bin/sh\n# Train the selected networks (one multirun per space and law); extra\n"
            "# overrides pass through, e.g.: sh candidates.sh dataset=digits phases=[warmup]\n"
            + "\n".join(lines)
            + "\n",
        )
    paths["plot_png"] = plot_catalogue(
        rows, opts.x, opts.y, result, out / "pareto_catalogue.png", opts.family
    )
    return {k: str(v) for k, v in paths.items()}


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of the rows, in order of first appearance."""
    return list(dict.fromkeys(k for r in rows for k in r))


def _print(opts: CatalogueOptions, rows: list[dict], result: dict) -> None:
    print(f"{len(rows)} rows from {opts.path}; y = {opts.y}")
    for c, f in result["fronts"].items():
        print(f"front of {c}: {int(f['front'].sum())} rows")
    for pair, shared in result["overlap"].items():
        print(f"shared by the fronts of {pair.replace('|', ' and ')}: {len(shared)}")
    for pair, rho in result["spearman"].items():
        print(f"spearman {pair.replace('|', ' vs ')}: {rho:.3f}")
    for r in result.get("proxy", {}).get("rows", []):
        print(
            f"{r['cost']} <= {r['budget']:.4g} ({r['fit']} fit): measured {r['measured_name']} "
            f"y={r['measured_y']}, proxy {r['proxy_name']} y={r['proxy_y']} "
            f"cost={r['proxy_cost']} violates={r['proxy_violates']}"
        )


def run_catalogue(cfg: DictConfig) -> dict[str, Any]:
    """Analyse a table of records and write the outputs; return paths and counts."""
    opts = parse_options(cfg)
    rows = load_table(opts.path)
    needed = [*opts.x, opts.y, opts.name, *([opts.proxy] if opts.proxy else [])]
    check_columns(rows, needed + ([opts.family] if opts.family else []), str(opts.path))
    result = analyse(rows, opts.x, opts.y, opts.name, opts.k, opts.budgets, opts.proxy, opts.family)
    paths = write_outputs(opts, rows, result)
    _print(opts, rows, result)
    print(f"wrote {', '.join(Path(p).name for p in paths.values())} to {opts.out_dir}")
    return {
        **paths,
        "n_rows": len(rows),
        "n_front": {c: int(f["front"].sum()) for c, f in result["fronts"].items()},
        "overlap": {k: len(v) for k, v in result["overlap"].items()},
        "spearman": result["spearman"],
        "proxy_regret": result.get("proxy", {}).get("rows", []),
    }
