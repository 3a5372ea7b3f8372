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

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from odimo.analysis.catalogue_fronts import (
    analyse,
    check_columns,
    column,
    load_table,
    plot_catalogue,
)
from odimo.characterization.candidates import parse_key, train_commands
from odimo.errors import ConfigError


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


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> Path:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows([_cell(r.get(c)) for c in columns] for r in rows)
    return path


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def write_outputs(opts: CatalogueOptions, rows: list[dict], result: dict) -> dict[str, str]:
    """pareto.csv, budgets.csv, selection.json, proxy_regret.csv and the plot."""
    out = opts.out_dir
    out.mkdir(parents=True, exist_ok=True)
    flagged = [dict(r) for r in rows]
    for c, front in result["fronts"].items():
        chosen = set(front["selected"])
        for i, r in enumerate(flagged):
            r[f"on_front_{c}"] = bool(front["front"][i])
            r[f"selected_{c}"] = i in chosen
    paths = {"pareto_csv": _write_csv(out / "pareto.csv", flagged)}
    budget_rows = [
        {"cost_column": c, **b} for c, f in result["fronts"].items() for b in f["budgets"]
    ]
    paths["budgets_csv"] = _write_csv(
        out / "budgets.csv", budget_rows, ["cost_column", "budget", "name", "cost", "y"]
    )
    names = [str(r.get(opts.name)) for r in rows]
    selection = {
        "catalogue": str(opts.path),
        "x": opts.x,
        "y": opts.y,
        "k": opts.k,
        "rows": len(rows),
        "selected": {
            c: [
                {"name": names[i], "cost": column(rows, c)[i], "y": column(rows, opts.y)[i]}
                for i in f["selected"]
            ]
            for c, f in result["fronts"].items()
        },
        "n_front": {c: int(f["front"].sum()) for c, f in result["fronts"].items()},
        "front_names": result["front_names"],
        "overlap": result["overlap"],
        "shared_by_all": result["shared_by_all"],
        "spearman": result["spearman"],
    }
    if "proxy" in result:
        selection["proxy"] = {
            "column": opts.proxy,
            "family": opts.family,
            "fits_log10": result["proxy"]["fits_log10"],
        }
        paths["proxy_regret_csv"] = _write_csv(out / "proxy_regret.csv", result["proxy"]["rows"])
    paths["selection_json"] = out / "selection.json"
    paths["selection_json"].write_text(
        json.dumps(_json_safe(selection), indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    keys = list(dict.fromkeys(s["name"] for sel in selection["selected"].values() for s in sel))
    if keys and all(parse_key(k) for k in keys):
        paths["candidates_sh"] = out / "candidates.sh"
        lines = [f'{cmd}"$@"' for cmd in train_commands(keys, [])]
        paths["candidates_sh"].write_text(
            "#!/bin/sh\n# Train the selected networks (one multirun per space and law); extra\n"
            "# overrides pass through, e.g.: sh candidates.sh dataset=digits phases=[warmup]\n"
            + "\n".join(lines)
            + "\n",
            encoding="utf-8",
        )
    paths["plot_png"] = plot_catalogue(
        rows, opts.x, opts.y, result, out / "pareto_catalogue.png", opts.family
    )
    return {k: str(v) for k, v in paths.items()}


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
