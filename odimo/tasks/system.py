# SPDX-License-Identifier: Apache-2.0
"""The system task: a pool of networks on one platform, every (little, big) cascade ranked, and
the little networks worth training.

`python tasks/system.py pool=[<sweep>,<run>,...] output_dir=<dir>` predicts the pool's runs that
lack predictions, ranks every pair and score (odimo.cascade.pool), prints the best rows and
writes `pool.csv`, `ranking.csv`, `ranking.json` and, for the best pair of each score, the
`cascade.json` of `tasks/cascade.py choose=near_big` in `<output_dir>/cascade_<score>/` (so
`tasks/pareto.py` draws it). With `little.catalogue=<catalogue.csv>` it also picks the
catalogue networks ≥ `little.ratio`× cheaper than big and prints the `train.py` multirun that
trains them (`little.sh`, `little.csv`).
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from odimo.analysis.catalogue_fronts import load_table
from odimo.cascade.evaluation import CascadeOptions, evaluate_cascade
from odimo.cascade.expected_cost import COST_METRICS
from odimo.cascade.pool import (
    RANK_ON,
    VIEWS,
    Member,
    RankOptions,
    best_per_score,
    load_pool,
    member_rows,
    rank_pool,
)
from odimo.cascade.scores import canonical
from odimo.characterization.little import column_metric, little_commands, select_little
from odimo.errors import ConfigError
from odimo.io import atomic_write_text, write_json, write_records_csv
from odimo.tasks.cascade import _holdout_fraction, _number, _one_of, _thresholds, write_outputs

RANKING_COLUMNS = (
    "rank",
    "little",
    "big",
    "score",
    "postcheck",
    "threshold",
    "meets",
    "saving",
    *(f"{k}_{v}" for v in ("select", "holdout", "test") for k in ("acc", "acc_big", "p_big")),
    "acc_little_test",
    "energy_expected_uj_holdout",
    "latency_expected_ms_holdout",
    "energy_expected_uj_test",
    "latency_expected_ms_test",
    "energy_uj_saving_test",
    "latency_ms_saving_test",
    *(f"{m}_{who}" for who in ("little", "big") for m in COST_METRICS),
)
POOL_COLUMNS = ("name", "platform", *COST_METRICS, *(f"acc_{v}" for v in VIEWS), "folder")
LITTLE_COLUMNS = ("name", "cost", "quality", "share_of_big")


def _paths(cfg: DictConfig) -> list[str]:
    if OmegaConf.is_missing(cfg, "pool") or cfg.get("pool") in (None, "", []):
        raise ConfigError("pool is required: python tasks/system.py pool=[<sweep dir>,<run>,...]")
    pool = cfg.pool
    return [str(pool)] if isinstance(pool, str) else [str(p) for p in pool]


def parse_rank(cfg: DictConfig) -> RankOptions:
    """The ranking keys, checked; ConfigError with one line."""
    scores = cfg.get("scores")
    scores = [scores] if isinstance(scores, str) else list(scores or [])
    if not scores:
        raise ConfigError("scores must name at least one score (maxp, margin, entropy, oracle)")
    _one_of(cfg, "cost_metric", COST_METRICS)
    _one_of(cfg, "rank_on", RANK_ON)
    thresholds = _thresholds(cfg)
    return RankOptions(
        scores=tuple(dict.fromkeys(canonical(str(s)) for s in scores)),
        postcheck=bool(cfg.postcheck),
        epsilon=_number(cfg, "epsilon", 0.0, 1.0),
        cost_metric=str(cfg.cost_metric),
        thresholds=thresholds,
        rank_on=str(cfg.rank_on),
    )


def run(cfg: DictConfig) -> dict[str, Any]:
    """Rank the pool's pairs, write the tables (and the little networks' commands)."""
    opts = parse_rank(cfg)
    if cfg.get("output_dir") in (None, ""):
        raise ConfigError("output_dir is required: where pool.csv and ranking.csv go")
    out = Path(str(cfg.output_dir)).expanduser().resolve()
    seed = cfg.get("split_seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"split_seed must be an integer, got {seed!r}")
    cut = (_holdout_fraction(cfg), seed)
    members = load_pool(
        _paths(cfg),
        cut,
        bool(cfg.mix_platforms),
        bool(cfg.predict_missing),
        int(cfg.batch_size),
        str(cfg.device),
    )
    little_cfg = cfg.get("little") or {}
    if len(members) < 2 and not little_cfg.get("catalogue"):
        raise ConfigError(f"the pool holds {len(members)} network: a cascade needs at least 2")
    rows = rank_pool(members, opts)
    out.mkdir(parents=True, exist_ok=True)
    write_records_csv(out / "pool.csv", POOL_COLUMNS, member_rows(members))
    write_records_csv(out / "ranking.csv", RANKING_COLUMNS, rows)
    settings = {**opts.__dict__, "holdout_fraction": cut[0], "split_seed": cut[1]}
    write_json(out / "ranking.json", {"settings": settings, "pairs": rows}, ensure_ascii=False)
    print_ranking(members, rows, opts, int(cfg.top))
    result: dict[str, Any] = {"out_dir": str(out), "ranking": rows, "cascades": {}}
    if cfg.write_cascades:
        result["cascades"] = write_best_cascades(members, rows, opts, cut, out, cfg)
    if little_cfg.get("catalogue"):
        result["little"] = little_networks(little_cfg, members, out)
    print(f"wrote pool.csv, ranking.csv and ranking.json to {out}")
    return result


def write_best_cascades(
    members: list[Member],
    rows: list[dict[str, Any]],
    opts: RankOptions,
    cut: tuple[float, int],
    out: Path,
    cfg: DictConfig,
) -> dict[str, str]:
    """cascade.json (+ curve) of the best pair of each score, as `tasks/cascade.py
    choose=near_big` writes it; returns score -> folder."""
    folder_of = {m.name: m.folder for m in members}
    written = {}
    for score, row in best_per_score(rows).items():
        job = out / f"cascade_{score}"
        cascade_opts = CascadeOptions(
            little=folder_of[row["little"]],
            big=folder_of[row["big"]],
            score=score,
            postcheck=opts.postcheck,
            threshold=None,
            choose="near_big",
            epsilon=opts.epsilon,
            cost_metric=opts.cost_metric,
            budget={m: None for m in COST_METRICS},
            thresholds=opts.thresholds,
            memory="none",
            holdout_fraction=cut[0],
            split_seed=cut[1],
            out_dir=job,
            mix_platforms=bool(cfg.mix_platforms),
        )
        result, curves, pair = evaluate_cascade(cascade_opts)
        write_outputs(job, result, curves, pair)
        written[score] = str(job)
    return written


def _pct(value: Any) -> str:
    ok = isinstance(value, float) and math.isfinite(value)
    return f"{100 * value:6.2f}" if ok else "     -"


def print_ranking(
    members: list[Member], rows: list[dict[str, Any]], opts: RankOptions, top: int
) -> None:
    """The pool, then the best `top` rows: where each pair was judged and how it did on test."""
    metric = opts.cost_metric
    print(
        f"{len(members)} networks in the pool ({metric}, val select/holdout/test acc %; "
        "accuracies of the noiseless chip, read-out noise: tasks/cascade.py on a pair):"
    )
    for m in sorted(members, key=lambda m: m.cost.get(metric)):
        accs = " ".join(_pct(m.acc(v)) for v in ("select", "holdout", "test"))
        print(f"  {m.cost.get(metric):10.4g}  {accs}  {m.name}")
    meets = sum(r["meets"] for r in rows)
    print(
        f"{len(rows)} (little, big, score) rows, {meets} within ε={100 * opts.epsilon:g} pt of "
        f"big on {opts.rank_on}; best first (p_big, acc and saving on {opts.rank_on}; test):"
    )
    judged = opts.rank_on
    for row in rows[:top]:
        print(
            f"  {row['rank']:3d}. {row['little']} → {row['big']} {row['score']}"
            f"{'+pc' if row['postcheck'] else ''}: t={row['threshold']:.4f} "
            f"p_big {_pct(row.get(f'p_big_{judged}'))} acc {_pct(row.get(f'acc_{judged}'))} "
            f"(big {_pct(row.get(f'acc_big_{judged}'))}) saving {_pct(row['saving'])} "
            f"{'' if row['meets'] else '[misses ε] '}| test acc {_pct(row.get('acc_test'))} "
            f"(big {_pct(row.get('acc_big_test'))}) p_big {_pct(row.get('p_big_test'))} "
            f"energy {_pct(row.get('energy_uj_saving_test'))} % less, latency "
            f"{_pct(row.get('latency_ms_saving_test'))} % less"
        )


def _reference(little_cfg: Any, members: list[Member], metric: str) -> tuple[float, Member | None]:
    """big's cost in the catalogue column's metric: `little.big_cost`, else the cost of the most
    accurate network of the pool on val's select part (ties: the cheaper)."""
    value = little_cfg.get("big_cost")
    if value is not None:
        return float(value), None
    best = max(members, key=lambda m: (m.acc("select"), -m.cost.get(metric)))
    return best.cost.get(metric), best


def _check_input_size(rows: list[dict[str, Any]], big: Member | None) -> None:
    """The catalogue must have been characterized at the big network's input size."""
    config = None if big is None else big.folder / "config.yaml"
    if config is None or not config.is_file():
        return
    size = ((yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("dataset") or {}).get(
        "input_size"
    )
    sizes = {str(r.get("input_size")) for r in rows if r.get("input_size") is not None}
    want = "x".join(str(int(s)) for s in size) if size else None
    if want and sizes and sizes != {want}:
        raise ConfigError(
            f"little.catalogue was characterized at {sorted(sizes)} but the pool's data is {want}"
            f": run tasks/characterize.py input_size=[{want.replace('x', ',')}] again"
        )


def little_networks(little_cfg: Any, members: list[Member], out: Path) -> dict[str, Any]:
    """Pick the little networks from the catalogue, print and write their train.py multiruns."""
    cost_column = str(little_cfg.get("cost_column"))
    metric = column_metric(cost_column)
    big_cost, big = _reference(little_cfg, members, metric)
    rows = load_table(str(little_cfg.catalogue))
    _check_input_size(rows, big)
    chosen = select_little(
        rows,
        cost_column=cost_column,
        quality_column=str(little_cfg.get("quality_column")),
        name_column=str(little_cfg.get("name_column")),
        big_cost=big_cost,
        ratio=float(little_cfg.get("ratio")),
        span=float(little_cfg.get("span")),
        k=int(little_cfg.get("k")),
    )
    overrides = [str(o) for o in (little_cfg.get("overrides") or [])]
    dataset = members[0].info.get("dataset")
    if dataset and not any(o.startswith("dataset=") for o in overrides):
        overrides.insert(0, f"dataset={dataset}")
    commands = little_commands(chosen, [shlex.quote(o) for o in overrides]) if chosen else []
    write_records_csv(out / "little.csv", LITTLE_COLUMNS, chosen)
    atomic_write_text(
        out / "little.sh",
        "#!/bin/sh\n# Train the little networks (extra overrides pass through)\n"
        + "".join(f'{c} "$@"\n' for c in commands),
    )
    who = f"{big.name}, " if big is not None else ""
    print(
        f"{len(chosen)} little networks ≤ 1/{little_cfg.get('ratio')} of big's {cost_column} "
        f"({who}{big_cost:.4g}), best {little_cfg.get('quality_column')} for their cost:"
    )
    for row in chosen:
        print(f"  {row['name']}: {row['cost']:.4g} ({100 * row['share_of_big']:.1f} % of big)")
    print("train them with:")
    for command in commands:
        print(f"  {command}")
    return {"chosen": chosen, "commands": commands, "big_cost": big_cost}
