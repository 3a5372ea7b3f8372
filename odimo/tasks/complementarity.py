# SPDX-License-Identifier: Apache-2.0
"""The complementarity task: pair matrices and a (little, big) ranking over a finished sweep.

`python tasks/complementarity.py sweep_dir=<dir>` reads the predictions of every finished run
(search points and baselines; missing ones are predicted first unless predict_missing=false) and
writes, on the chosen split (validation by default): `complementarity_exactly_one.csv`,
`complementarity_symmetric.csv`, `complementarity.png` (both heat maps), `ranking.csv` and
`ranking.json` (the proposed pairs, best first).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from odimo.analysis.sweep import scan_sweep
from odimo.cascade.complementarity import (
    RANK_BY,
    Candidate,
    complementarity_matrices,
    rank_pairs,
)
from odimo.cascade.expected_cost import COST_METRICS
from odimo.cascade.plots import plot_heatmaps
from odimo.cascade.preds import SPLITS, PredictionsError, check_pair, info_cost, load_run
from odimo.errors import ConfigError, OdimoError
from odimo.tasks import predict as predict_task

log = logging.getLogger(__name__)
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
    if cfg.get("split") not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {cfg.get('split')!r}")
    if cfg.get("rank_by") not in RANK_BY:
        raise ConfigError(f"rank_by must be one of {RANK_BY}, got {cfg.get('rank_by')!r}")
    if cfg.get("cost_metric") not in COST_METRICS:
        raise ConfigError(f"cost_metric must be one of {COST_METRICS}")
    out = cfg.get("out_dir")
    out_dir = sweep_dir / "complementarity" if out in (None, "") else Path(str(out)).resolve()
    return sweep_dir, out_dir


def collect_pool(cfg: DictConfig, sweep_dir: Path) -> list[Candidate]:
    """One candidate per finished run with predictions (predicted here when missing)."""
    pool: list[Candidate] = []
    for job in scan_sweep(sweep_dir).jobs:
        run_dir = Path(job["job_dir"])
        if not (run_dir / "preds" / "info.json").is_file():
            if not cfg.predict_missing:
                log.warning("skipping %s: no predictions (predict_missing=false)", run_dir)
                continue
            predict_task.run(
                OmegaConf.create(
                    {
                        "run_dir": str(run_dir),
                        "splits": list(SPLITS),
                        "batch_size": cfg.batch_size,
                        "num_workers": 0,
                        "device": cfg.device,
                        "check_metrics": True,
                    }
                )
            )
        preds, info = load_run(run_dir, str(cfg.split))
        pool.append(Candidate(job["label"], preds, info_cost(info)))
    if len(pool) < 2:
        raise OdimoError(
            f"need at least 2 finished runs with predictions under {sweep_dir}, found {len(pool)}"
        )
    for other in pool[1:]:
        check_pair(pool[0].preds, other.preds)
    return pool


def _write_matrix(path: Path, names: list[str], matrix: np.ndarray) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["network", *names])
        writer.writerows([name, *(f"{v:.6f}" for v in row)] for name, row in zip(names, matrix))
    return path


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return value


def run(cfg: DictConfig) -> dict[str, Any]:
    """Write the matrices, heat maps and ranking; returns the ranking and output paths."""
    sweep_dir, out_dir = _options(cfg)
    pool = collect_pool(cfg, sweep_dir)
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
    with (out_dir / "ranking.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(RANKING_COLUMNS)
        writer.writerows([_cell(row[c]) for c in RANKING_COLUMNS] for row in ranking)
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
    (out_dir / "ranking.json").write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
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
