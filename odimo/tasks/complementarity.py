# SPDX-License-Identifier: Apache-2.0
"""The complementarity task: pair matrices and a (little, big) ranking over a finished sweep.

`python tasks/complementarity.py sweep_dir=<dir>` reads the predictions of every finished run
(search points and baselines; missing ones are predicted first unless predict_missing=false) and
writes, on the chosen split (by default `select`, the part of validation the cascade task
chooses its threshold on, so that its held-out part stays unseen):
`complementarity_exactly_one.csv`, `complementarity_symmetric.csv`, `complementarity.png` (both
heat maps), `ranking.csv` and `ranking.json` (the proposed pairs, best first).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from odimo.cascade.complementarity import (
    RANK_BY,
    collect_pool,
    complementarity_matrices,
    rank_pairs,
)
from odimo.cascade.expected_cost import COST_METRICS
from odimo.cascade.plots import plot_heatmaps
from odimo.cascade.preds import SPLITS, PredictionsError
from odimo.errors import ConfigError
from odimo.io import write_csv, write_json, write_records_csv

log = logging.getLogger(__name__)
#: Splits the pairs can be ranked on; `select` is the part of val the cascade task chooses on.
RANK_SPLITS = ("select", *SPLITS)
RANKING_COLUMNS = (
    "rank",
    "little",
    "big",
    "saving",
    "threshold",
    "acc_cascade",
    "p_big",
    "acc_little",
    "acc_big",
    "acc_oracle",
    "exactly_one",
    "symmetric",
)


def _options(cfg: DictConfig) -> tuple[Path, Path]:
    if OmegaConf.is_missing(cfg, "sweep_dir") or cfg.get("sweep_dir") in (None, ""):
        raise ConfigError("sweep_dir is required: python tasks/complementarity.py sweep_dir=<dir>")
    sweep_dir = Path(str(cfg.sweep_dir)).expanduser().resolve()
    if not sweep_dir.is_dir():
        raise ConfigError(f"sweep_dir {sweep_dir} is not a directory")
    if cfg.get("split") not in RANK_SPLITS:
        raise ConfigError(f"split must be one of {RANK_SPLITS}, got {cfg.get('split')!r}")
    fraction, seed = cfg.get("holdout_fraction"), cfg.get("split_seed")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise ConfigError(f"holdout_fraction must be a number in (0, 1), got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"split_seed must be an integer, got {seed!r}")
    if cfg.get("rank_by") not in RANK_BY:
        raise ConfigError(f"rank_by must be one of {RANK_BY}, got {cfg.get('rank_by')!r}")
    if cfg.get("cost_metric") not in COST_METRICS:
        raise ConfigError(f"cost_metric must be one of {COST_METRICS}")
    out = cfg.get("out_dir")
    out_dir = sweep_dir / "complementarity" if out in (None, "") else Path(str(out)).resolve()
    return sweep_dir, out_dir


def _write_matrix(path: Path, names: list[str], matrix: np.ndarray) -> Path:
    rows = ([name, *(f"{v:.6f}" for v in row)] for name, row in zip(names, matrix))
    return write_csv(path, ["network", *names], rows)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return value


def run(cfg: DictConfig) -> dict[str, Any]:
    """Write the matrices, heat maps and ranking; returns the ranking and output paths."""
    sweep_dir, out_dir = _options(cfg)
    pool = collect_pool(
        sweep_dir,
        str(cfg.split),
        bool(cfg.predict_missing),
        int(cfg.batch_size),
        cfg.device,
        cut=(float(cfg.holdout_fraction), int(cfg.split_seed)),
    )
    names = [c.name for c in pool]
    correct = np.stack([c.preds.correct for c in pool])
    matrices = complementarity_matrices(correct)
    ranking = rank_pairs(
        pool,
        matrices,
        epsilon=float(cfg.epsilon),
        cost_metric=str(cfg.cost_metric),
        rank_by=str(cfg.rank_by),
        thresholds=int(cfg.thresholds),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for key, matrix in matrices.items():
        _write_matrix(out_dir / f"complementarity_{key}.csv", names, matrix)
    plot_heatmaps(
        matrices,
        names,
        out_dir / "complementarity.png",
        title=f"{sweep_dir.name}: complementarity on {cfg.split}",
    )
    write_records_csv(out_dir / "ranking.csv", RANKING_COLUMNS, ranking, cell=_cell)
    safe = [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        for row in ranking
    ]
    runs = {c.name: str(Path(c.preds.source).parent.parent) for c in pool}
    payload = {
        "split": cfg.split,
        "rank_by": cfg.rank_by,
        "epsilon": float(cfg.epsilon),
        "cost_metric": cfg.cost_metric,
        "runs": runs,
        "pairs": safe,
    }
    write_json(out_dir / "ranking.json", payload, ensure_ascii=False)
    print(f"{len(pool)} networks, {len(ranking)} pairs with cost(little) < cost(big); best first:")
    for row in ranking[:5]:
        print(
            f"  {row['rank']}. {row['little']} → {row['big']}: saving {_pct(row['saving'])} of "
            f"big's {cfg.cost_metric} at acc {_pct(row['acc_cascade'])} (big "
            f"{_pct(row['acc_big'])}), exactly-one {_pct(row['exactly_one'])}"
        )
    print(f"wrote matrices, complementarity.png and ranking.csv/json to {out_dir}")
    return {"out_dir": str(out_dir), "names": names, "ranking": safe, "runs": runs}


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{100 * value:.1f} %"


__all__ = ["run", "PredictionsError"]
