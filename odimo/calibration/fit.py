# SPDX-License-Identifier: Apache-2.0
"""Fit a platform's cost-model constants to measured per-layer cycles (and energy).

A measurements table has one row per (layer geometry, channel split): the geometry columns,
`ch_<unit>` channels and measured `cycles_<unit>` busy cycles per unit, optionally
`energy_mw_cycles` or `energy_uj`, and optionally `group` (rows that are alternatives of one
decision, e.g. the splits of one layer). Each unit's cycles are linear in some constants
(`Platform.CYCLE_CONSTANTS`), so they are fitted by non-negative least squares on relative
residuals (every layer counts alike, whatever its size); energy is linear in the powers given
the unit cycles. The report compares the prior and the calibrated platform: median/p90 relative
error, Spearman rank correlation and the regret of choosing by the model.
"""

from __future__ import annotations

import copy
import csv
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import nnls
from scipy.stats import spearmanr

from odimo.errors import OdimoError
from odimo.hw.geometry import GeometryTable, LayerGeometry
from odimo.hw.platform import Platform

GEOMETRY_COLUMNS = ("c_in", "c_out", "k_x", "k_y", "o_x", "o_y", "groups")


class Measurements:
    """A parsed measurements table: geometry, counts [N, U], measured cycles [N, U], energy."""

    def __init__(self, rows: list[dict[str, str]], platform: Platform, source: str):
        units = platform.unit_names
        required = [*GEOMETRY_COLUMNS, *(f"ch_{u}" for u in units)]
        required += [f"cycles_{u}" for u in units]
        if not rows:
            raise OdimoError(f"{source} has no rows")
        missing = [c for c in required if c not in rows[0]]
        if missing:
            raise OdimoError(
                f"{source} lacks column(s) {', '.join(missing)} (needs {', '.join(required)})"
            )
        self.source = source
        self.geometry = [self._geometry(i, r) for i, r in enumerate(rows)]
        self.counts = self._matrix(rows, [f"ch_{u}" for u in units])
        self.cycles = self._matrix(rows, [f"cycles_{u}" for u in units])
        self.energy = self._energy(rows, platform)
        self.groups = [r.get("group") or f"row{i}" for i, r in enumerate(rows)]

    def _number(self, i: int, row: dict[str, str], col: str) -> float:
        try:
            value = float(row[col])
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise OdimoError(
                f"{self.source} row {i + 2}: {col} must be a number >= 0, got {row[col]!r}"
            )
        return value

    def _geometry(self, i: int, row: dict[str, str]) -> LayerGeometry:
        v = {c: int(self._number(i, row, c)) for c in GEOMETRY_COLUMNS}
        stride = int(self._number(i, row, "stride")) if row.get("stride") else 1
        return LayerGeometry(row.get("name") or f"row{i}", stride=stride, **v)

    def _matrix(self, rows: list[dict[str, str]], cols: list[str]) -> torch.Tensor:
        data = [[self._number(i, r, c) for c in cols] for i, r in enumerate(rows)]
        return torch.tensor(data, dtype=torch.float64)

    def _energy(self, rows: list[dict[str, str]], platform: Platform) -> torch.Tensor | None:
        if "energy_mw_cycles" in rows[0]:
            return self._matrix(rows, ["energy_mw_cycles"])[:, 0]
        if "energy_uj" in rows[0]:
            uj = self._matrix(rows, ["energy_uj"])[:, 0]
            return uj * platform.freq_hz / 1e3
        return None

    def subset(self, rows: list[int]) -> Measurements:
        """The measurements of the given rows only (a held-out fold or its complement)."""
        part = copy.copy(self)
        index = torch.tensor(rows, dtype=torch.long)
        part.geometry = [self.geometry[i] for i in rows]
        part.counts, part.cycles = self.counts[index], self.cycles[index]
        part.energy = None if self.energy is None else self.energy[index]
        part.groups = [self.groups[i] for i in rows]
        return part

    @property
    def table(self) -> GeometryTable:
        return GeometryTable(self.geometry, dtype=torch.float64)

    @property
    def latency(self) -> torch.Tensor:
        """Measured layer latency [N]: the slowest unit (units run in parallel)."""
        return self.cycles.amax(-1)


def read_measurements(path: str | Path, platform: Platform) -> Measurements:
    """Read a measurements CSV; OdimoError with one line for a missing file, column or value."""
    path = Path(path)
    if not path.is_file():
        raise OdimoError(f"measurements file {path} does not exist")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return Measurements(rows, platform, str(path))


def _nnls_relative(terms: list[torch.Tensor], target: torch.Tensor) -> np.ndarray:
    """Non-negative coefficients minimising Σ ((Σ_k c_k·term_k − y) / y)² over rows with y > 0."""
    a = torch.stack(terms, dim=-1).numpy()
    y = target.numpy()
    keep = y > 0
    if keep.sum() < a.shape[1]:
        raise OdimoError(f"too few measured rows ({int(keep.sum())}) to fit {a.shape[1]} constants")
    coef, _ = nnls(a[keep] / y[keep, None], np.ones(int(keep.sum())))
    return coef


def fit_platform(platform: Platform, data: Measurements, name: str) -> Platform:
    """A platform like `platform` whose fitted constants minimise the relative error."""
    terms = platform.cycle_terms(data.counts, data.table)
    fitted: dict[str, float] = {}
    for unit, spec in platform.CYCLE_CONSTANTS.items():
        u = platform.unit_index(unit)
        active = data.counts[:, u] > 0
        coef = _nnls_relative([t[active] for t in terms[unit]], data.cycles[active, u])
        for (const, inverse), c in zip(spec, coef, strict=True):
            if c <= 0:
                raise OdimoError(f"the fit gives {const} no effect: measure more varied layers")
            fitted[const] = float(1.0 / c if inverse else c)
    if data.energy is not None:
        coef = _nnls_relative(list(platform.energy_terms(data.cycles)), data.energy)
        fitted.update({k: float(c) for k, c in zip(platform.ENERGY_CONSTANTS, coef, strict=True)})
    return platform.with_constants(replace(platform.constants, **fitted), name)


def _errors(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Median and p90 of |pred − true| / true, and Spearman's ρ, over rows with true > 0."""
    keep = true > 0
    rel = np.abs(pred[keep] - true[keep]) / true[keep]
    rho = spearmanr(pred[keep], true[keep]).statistic if keep.sum() > 2 else math.nan
    return {
        "median_rel_error": float(np.median(rel)),
        "p90_rel_error": float(np.percentile(rel, 90)),
        "spearman": float(rho),
    }


def selection_regret(pred: np.ndarray, true: np.ndarray, groups: list[str]) -> dict[str, Any]:
    """Choose, in each group of >= 2 rows, the row with the least predicted cost.

    Regret = measured cost of the choice / least measured cost of the group − 1.
    """
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    regrets = []
    for idx in by_group.values():
        if len(idx) < 2:
            continue
        idx = np.array(idx)
        chosen = idx[np.argmin(pred[idx])]
        regrets.append(true[chosen] / true[idx].min() - 1.0)
    if not regrets:
        return {"groups": 0, "mean_regret": math.nan, "max_regret": math.nan, "wrong": 0}
    r = np.array(regrets)
    return {
        "groups": len(r),
        "mean_regret": float(r.mean()),
        "max_regret": float(r.max()),
        "wrong": int((r > 1e-12).sum()),
    }


def evaluate(platform: Platform, data: Measurements) -> dict[str, Any]:
    """Prediction quality of `platform` on the measurements: per unit, latency and energy."""
    cost = platform.evaluate(data.counts, data.table, soft=False)
    pred_lat = cost.latency_cycles.numpy()
    true_lat = data.latency.numpy()
    out: dict[str, Any] = {"latency": _errors(pred_lat, true_lat)}
    out["latency"]["selection"] = selection_regret(pred_lat, true_lat, data.groups)
    for u, unit in enumerate(platform.unit_names):
        out[f"cycles_{unit}"] = _errors(cost.unit_cycles[:, u].numpy(), data.cycles[:, u].numpy())
    if data.energy is not None:
        true_e = data.energy.numpy()
        pred_e = cost.energy_mw_cycles.numpy()
        out["energy"] = _errors(pred_e, true_e)
        out["energy"]["selection"] = selection_regret(pred_e, true_e, data.groups)
    return out


def kfold_errors(platform: Platform, data: Measurements, folds: int = 5, seed: int = 0) -> dict:
    """Held-out error of the calibration: rows split into `folds` folds BY GROUP (all splits
    of one layer in the same fold, so a layer is never fitted and scored at once); each fold
    is predicted by constants fitted on the other folds. The honest number to quote; the
    in-sample error of `evaluate` on synthetic data is only a self-consistency check."""
    names = sorted(set(data.groups))
    if len(names) < folds or folds < 2:
        raise OdimoError(f"k-fold needs at least {max(folds, 2)} layer groups, got {len(names)}")
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[j]: i % folds for i, j in enumerate(order)}
    pred_lat = np.zeros(len(data.groups))
    pred_e = np.zeros(len(data.groups))
    for f in range(folds):
        test = [i for i, g in enumerate(data.groups) if fold_of[g] == f]
        train = [i for i, g in enumerate(data.groups) if fold_of[g] != f]
        fitted = fit_platform(platform, data.subset(train), platform.name)
        held = predictions(fitted, data.subset(test))
        pred_lat[test], pred_e[test] = held["latency_cycles"], held["energy_mw_cycles"]
    out: dict[str, Any] = {"folds": folds, "groups": len(names)}
    out["latency"] = _errors(pred_lat, data.latency.numpy())
    if data.energy is not None:
        out["energy"] = _errors(pred_e, data.energy.numpy())
    return out


def predictions(platform: Platform, data: Measurements) -> dict[str, np.ndarray]:
    """Predicted latency and energy per row (for the predictions table)."""
    cost = platform.evaluate(data.counts, data.table, soft=False)
    return {
        "latency_cycles": cost.latency_cycles.numpy(),
        "energy_mw_cycles": cost.energy_mw_cycles.numpy(),
    }
