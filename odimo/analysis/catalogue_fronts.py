# SPDX-License-Identifier: Apache-2.0
"""Pareto analysis of any table of records (a characterization catalogue or a published one).

Several cost columns (one per platform) give one front each: the rows of least cost for their
value of `y` (maximised: accuracy, or MACs as capacity before training). Across the columns:
which names the fronts share and the Spearman rank correlation between the columns. With a
proxy column (MACs, FLOPs), each cost is fitted on the proxy by least squares in log-log space,
globally and per family, and the choice under each budget made with the predicted cost is set
next to the choice made with the measured one (proxy regret).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from odimo.analysis.pareto import (
    best_under_budgets,
    default_budgets,
    non_dominated,
    select_representatives,
)
from odimo.errors import ConfigError, OdimoError

DEFAULT_BUDGET_COUNT = 5


def _parse(value: str) -> Any:
    """A CSV cell: a float where it reads as one, else the string."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    """Lift nested dicts' keys to the top (prefixed `parent.key` on a clash); lists as JSON."""
    out: dict[str, Any] = {}
    nested = []
    for k, v in record.items():
        if isinstance(v, dict):
            nested.append((k, v))
        else:
            out[k] = json.dumps(v) if isinstance(v, list) else v
    for parent, sub in nested:
        for k, v in _flatten(sub).items():
            out[f"{parent}.{k}" if k in out else k] = v
    return out


def load_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a CSV file, a JSON list of records, JSON lines, or a folder of JSON records."""
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.json")) or sorted((path / "records").glob("*.json"))
        if not files:
            raise OdimoError(f"catalogue folder {path} holds no JSON records")
        return [_flatten(json.loads(f.read_text(encoding="utf-8"))) for f in files]
    if not path.is_file():
        raise OdimoError(f"catalogue {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":
        rows = [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(text.splitlines())]
    else:
        try:
            data = json.loads(text)
            rows = data if isinstance(data, list) else [data]
        except json.JSONDecodeError:
            try:
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            except json.JSONDecodeError as err:
                raise OdimoError(f"catalogue {path} is neither CSV nor JSON ({err})") from None
        rows = [_flatten(r) for r in rows if isinstance(r, dict)]
    if not rows:
        raise OdimoError(f"catalogue {path} has no records")
    return rows


def check_columns(rows: list[dict[str, Any]], columns: Sequence[str], source: str) -> None:
    """ConfigError naming the first column that no row has (and the columns there are)."""
    have = {k for r in rows for k in r}
    for col in columns:
        if col not in have:
            shown = ", ".join(sorted(have)[:30])
            raise ConfigError(f"catalogue {source} has no column {col!r} (columns: {shown})")


def column(rows: list[dict[str, Any]], key: str, positive: bool = False) -> np.ndarray:
    """A float column; missing or non-numeric cells (and <= 0 when `positive`) become NaN."""
    out = np.array(
        [r.get(key) if isinstance(r.get(key), (int, float)) else math.nan for r in rows],
        dtype=float,
    )
    if positive:
        out[~(out > 0)] = math.nan
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ over the rows where both are finite (NaN with fewer than 3)."""
    keep = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[keep], b[keep]).statistic) if keep.sum() > 2 else math.nan


@dataclass(frozen=True)
class LogLogFit:
    """log10(cost) = intercept + slope · log10(proxy), per family (key None: all rows)."""

    coefs: dict[str | None, tuple[float, float]]

    @classmethod
    def fit(cls, proxy: np.ndarray, cost: np.ndarray, family: Sequence[Any] | None) -> LogLogFit:
        keep = np.isfinite(proxy) & np.isfinite(cost) & (proxy > 0) & (cost > 0)
        coefs: dict[str | None, tuple[float, float]] = {None: cls._line(proxy, cost, keep)}
        if family is not None:
            fam = np.array([str(f) for f in family])
            for f in sorted(set(fam[keep])):
                if (keep & (fam == f)).sum() >= 3:
                    coefs[f] = cls._line(proxy, cost, keep & (fam == f))
        return cls(coefs)

    @staticmethod
    def _line(proxy: np.ndarray, cost: np.ndarray, keep: np.ndarray) -> tuple[float, float]:
        if keep.sum() < 2:
            raise OdimoError("fewer than 2 rows with a positive proxy and cost: cannot fit")
        slope, intercept = np.polyfit(np.log10(proxy[keep]), np.log10(cost[keep]), 1)
        return float(intercept), float(slope)

    def predict(self, proxy: np.ndarray, family: Sequence[Any] | None = None) -> np.ndarray:
        """Predicted cost; per-family lines where the family has one, else the global line."""
        out = np.full(proxy.shape, math.nan)
        for i, p in enumerate(proxy):
            key = str(family[i]) if family is not None else None
            a, b = self.coefs.get(key, self.coefs[None])
            out[i] = 10 ** (a + b * math.log10(p)) if p > 0 else math.nan
        return out


def _choice(names, idx, cost, acc, budget) -> dict[str, Any]:
    """The fields of one budgeted choice (empty when nothing fits)."""
    if idx is None:
        return {"name": None, "cost": None, "y": None, "violates": None}
    return {
        "name": names[idx],
        "cost": float(cost[idx]),
        "y": float(acc[idx]),
        "violates": bool(cost[idx] > budget),
    }


def proxy_regret(
    rows: list[dict[str, Any]],
    names: list[str],
    x: str,
    y: str,
    proxy: str,
    budgets: list[float],
    family: str | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Budgeted choices with the measured cost vs the cost predicted from the proxy."""
    cost, acc, prox = column(rows, x, True), column(rows, y), column(rows, proxy, True)
    fam = [r.get(family) for r in rows] if family else None
    fits = {"global": LogLogFit.fit(prox, cost, None)}
    if fam is not None:
        fits["family"] = LogLogFit.fit(prox, cost, fam)
    out = []
    for fit_name, fit in fits.items():
        pred = fit.predict(prox, fam if fit_name == "family" else None)
        true_hits = best_under_budgets(cost, acc, budgets)
        pred_hits = best_under_budgets(np.where(np.isfinite(cost), pred, np.nan), acc, budgets)
        for t, p in zip(true_hits, pred_hits, strict=True):
            b = t["budget"]
            measured = _choice(names, t["index"], cost, acc, b)
            chosen = _choice(names, p["index"], cost, acc, b)
            regret = (
                measured["y"] - chosen["y"]
                if measured["y"] is not None and chosen["y"] is not None
                else None
            )
            out.append(
                {
                    "cost": x,
                    "fit": fit_name,
                    "budget": b,
                    **{f"measured_{k}": v for k, v in measured.items() if k != "violates"},
                    **{f"proxy_{k}": v for k, v in chosen.items()},
                    "regret_y": regret,
                }
            )
    summary = {name: {str(k): list(v) for k, v in f.coefs.items()} for name, f in fits.items()}
    return out, summary


def analyse_front(
    names: list[str], cost: np.ndarray, acc: np.ndarray, k: int, budgets: list[float] | None
) -> dict[str, Any]:
    """Front mask, k representatives over log-spaced costs and the budget table of one cost."""
    front = non_dominated(cost, acc)
    if budgets is None:
        budgets = default_budgets(cost, acc, DEFAULT_BUDGET_COUNT)
    hits = best_under_budgets(cost, acc, budgets)
    return {
        "front": front,
        "selected": select_representatives(cost, acc, front, k),
        "budgets": [
            {
                "budget": h["budget"],
                "name": names[h["index"]] if h["index"] is not None else None,
                "cost": h["cost"],
                "y": h["acc"],
            }
            for h in hits
        ],
        "budget_values": list(budgets),
    }


def analyse(
    rows: list[dict[str, Any]],
    x: list[str],
    y: str,
    name: str,
    k: int,
    budgets: dict[str, list[float] | None],
    proxy: str | None = None,
    family: str | None = None,
) -> dict[str, Any]:
    """Fronts per cost column, their overlap, rank correlations and the proxy regret."""
    names = [str(r.get(name)) for r in rows]
    acc = column(rows, y)
    fronts = {c: analyse_front(names, column(rows, c, True), acc, k, budgets.get(c)) for c in x}
    members = {c: {names[i] for i in np.flatnonzero(f["front"])} for c, f in fronts.items()}
    overlap = {
        f"{a}|{b}": sorted(members[a] & members[b]) for i, a in enumerate(x) for b in x[i + 1 :]
    }
    shared_all = sorted(set.intersection(*members.values())) if members else []
    ranked = [*x, *([proxy] if proxy and proxy not in x else [])]
    correlation = {
        f"{a}|{b}": spearman(column(rows, a), column(rows, b))
        for i, a in enumerate(ranked)
        for b in ranked[i + 1 :]
    }
    result: dict[str, Any] = {
        "fronts": fronts,
        "front_names": {c: sorted(m) for c, m in members.items()},
        "overlap": overlap,
        "shared_by_all": shared_all,
        "spearman": correlation,
    }
    if proxy:
        regret_rows, fits = [], {}
        for c in x:
            more, fits[c] = proxy_regret(
                rows, names, c, y, proxy, fronts[c]["budget_values"], family
            )
            regret_rows += more
        result["proxy"] = {"rows": regret_rows, "fits_log10": fits}
    return result


def flag_rows(rows: list[dict[str, Any]], result: dict[str, Any]) -> list[dict[str, Any]]:
    """Copies of the rows with `on_front_<x>` and `selected_<x>` for every cost column."""
    flagged = [dict(r) for r in rows]
    for c, front in result["fronts"].items():
        chosen = set(front["selected"])
        for i, r in enumerate(flagged):
            r[f"on_front_{c}"] = bool(front["front"][i])
            r[f"selected_{c}"] = i in chosen
    return flagged


def catalogue_selection(
    rows: list[dict[str, Any]], result: dict[str, Any], x: list[str], y: str, name: str, k: int
) -> dict[str, Any]:
    """selection.json without its source fields: chosen names per front, overlap, correlations."""
    names = [str(r.get(name)) for r in rows]
    return {
        "x": x,
        "y": y,
        "k": k,
        "rows": len(rows),
        "selected": {
            c: [
                {"name": names[i], "cost": column(rows, c)[i], "y": column(rows, y)[i]}
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


def plot_catalogue(
    rows: list[dict[str, Any]],
    x: list[str],
    y: str,
    result: dict[str, Any],
    path: Path,
    family: str | None = None,
) -> Path:
    """One panel per cost column: every row (coloured by family), the front and the selection."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * len(x), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    acc = column(rows, y)
    fams = [str(r.get(family)) for r in rows] if family else ["all"] * len(rows)
    for j, c in enumerate(x):
        ax = fig.add_subplot(1, len(x), j + 1)
        cost = column(rows, c, True)
        for f in sorted(set(fams)):
            m = np.array([v == f for v in fams])
            ax.scatter(cost[m], acc[m], s=9, alpha=0.5, label=f)
        front = result["fronts"][c]["front"]
        order = np.argsort(cost[front])
        ax.step(
            cost[front][order],
            acc[front][order],
            where="post",
            color="black",
            lw=1.2,
            label=f"front ({int(front.sum())})",
        )
        sel = result["fronts"][c]["selected"]
        ax.scatter(
            cost[sel], acc[sel], s=60, facecolors="none", edgecolors="red", lw=1.5, label="selected"
        )
        ax.set_xscale("log")
        if np.nanmin(acc) > 0 and np.nanmax(acc) / np.nanmin(acc) > 100:
            ax.set_yscale("log")
        ax.set_xlabel(c)
        ax.set_ylabel(y)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=110)
    return path
