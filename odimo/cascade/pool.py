# SPDX-License-Identifier: Apache-2.0
"""A pool of networks on one platform, and every (little, big) cascade of two of them, ranked.

A pool is any set of finished runs (a sweep's search points and baselines, trained catalogue
networks, converted networks' runs) or prediction folders (`tasks/predict.py`), all predicted on
the same val and test split and costed on ONE platform (costs from two cost models do not add
up). For each pair with cost(little) < cost(big) and each score, the threshold is the cheapest
one whose accuracy on val's `select` part is ≥ big's − ε there (`choose_near_big`, as
`tasks/cascade.py choose=near_big`). The pair is then judged where that choice was not made:
on val's `holdout` part (`rank_on=holdout`, the default) it must again reach big's accuracy − ε,
and the pairs that do are ranked by their expected cost there; test is only reported.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from odimo.analysis.sweep import scan_sweep
from odimo.cascade.curve import build_curve, choose_near_big
from odimo.cascade.expected_cost import COST_METRICS, NetCost
from odimo.cascade.holdout import PARTS, split_val, subset
from odimo.cascade.predict import predict_finished_run
from odimo.cascade.preds import (
    PREDS_DIR,
    SPLITS,
    Predictions,
    PredictionsError,
    check_pair,
    info_cost,
    load_run,
)
from odimo.cascade.routing import at_threshold, pair_outputs, threshold_grid
from odimo.errors import ConfigError
from odimo.hw import platform_key

log = logging.getLogger(__name__)

#: Where a ranked pair is judged (`select`: where its threshold was chosen; `holdout`: not).
RANK_ON = ("holdout", "select")
#: Every split and part of val a member's predictions are kept for.
VIEWS = (*SPLITS, *PARTS)
#: metric -> the key of an expected cost in a ranking row.
EXPECTED_KEY = {"latency_ms": "latency_expected_ms", "energy_uj": "energy_expected_uj"}


@dataclass(frozen=True)
class Member:
    """One network of the pool: predictions on every view, cost per inference, platform key."""

    name: str
    folder: Path
    preds: dict[str, Predictions]
    cost: NetCost
    platform: str | None
    info: dict[str, Any]

    def acc(self, view: str) -> float:
        return self.preds[view].acc


def member_folders(paths: Iterable[str | Path]) -> list[Path]:
    """Folders of the pool: a run or predictions folder as it is, a sweep folder as its
    finished runs (DONE); each folder once, in order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"pool entry {path} is not a folder (a run, a sweep or a preds dir)")
        if (path / "metrics.json").is_file() or (path / PREDS_DIR / "info.json").is_file():
            runs = [path]
        else:
            runs = [Path(job["job_dir"]) for job in scan_sweep(path).jobs]
            if not runs:
                raise ConfigError(f"pool entry {path} holds no finished run (metrics.json + DONE)")
        found.extend(r for r in runs if r not in found)
    return found


def describe(folder: Path, info: dict[str, Any]) -> str:
    """A readable name: the network (a sampled net's space/law/id) and the run's label."""
    label = str(info.get("name") or folder.name)
    config = folder / "config.yaml"
    if not config.is_file():
        return label
    model = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("model") or {}
    if model.get("name") == "sampled":
        net = f"{model.get('space')}/{model.get('law')}/{model.get('id')}"
    else:
        net = str(model.get("name") or info.get("model") or "")
    return f"{net} {label}".strip()


def load_member(
    folder: Path,
    cut: tuple[float, int],
    predict_missing: bool = True,
    batch_size: int = 512,
    device: str = "cpu",
) -> Member:
    """A folder's predictions (made first for a finished run without them, if allowed), with
    val cut into `select` and `holdout` by `cut` = (holdout_fraction, split_seed)."""
    if not (folder / PREDS_DIR / "info.json").is_file():
        if not (predict_missing and (folder / "metrics.json").is_file()):
            raise PredictionsError(
                f"{folder} has no predictions: run python tasks/predict.py run_dir={folder}"
            )
        predict_finished_run(folder, list(SPLITS), batch_size, 0, device, True)
    preds: dict[str, Predictions] = {}
    for split in SPLITS:
        preds[split], info = load_run(folder, split)
    parts = split_val(len(preds["val"]), *cut)
    for part in PARTS:
        preds[part] = subset(preds["val"], parts[part], part)
    return Member(
        describe(folder, info),
        folder,
        preds,
        info_cost(info),
        platform_key(info.get("platform")),
        info,
    )


def check_pool(members: Sequence[Member], mix_platforms: bool) -> None:
    """Same dataset, same samples in the same order, and one platform (unless allowed)."""
    datasets = {m.info.get("dataset") for m in members}
    if len(datasets) > 1:
        raise ConfigError(f"the pool mixes datasets {sorted(map(str, datasets))}: one per pool")
    for other in members[1:]:
        for split in SPLITS:
            check_pair(members[0].preds[split], other.preds[split])
    platforms: dict[str, list[str]] = {}
    for m in members:
        platforms.setdefault(str(m.platform), []).append(m.name)
    if len(platforms) > 1 and not mix_platforms:
        which = "; ".join(f"{key}: {', '.join(names[:3])}" for key, names in platforms.items())
        raise ConfigError(
            f"the pool mixes {len(platforms)} cost platforms ({which}); their costs do not add "
            "up: pool runs of one platform (mix_platforms=true if they really run on two chips)"
        )


def unique_names(members: list[Member]) -> list[Member]:
    """Members whose names repeat get their folder's name appended."""
    counts: dict[str, int] = {}
    for m in members:
        counts[m.name] = counts.get(m.name, 0) + 1
    return [
        m if counts[m.name] == 1 else Member(f"{m.name} [{m.folder.name}]", *_rest(m))
        for m in members
    ]


def _rest(m: Member) -> tuple:
    return m.folder, m.preds, m.cost, m.platform, m.info


def load_pool(
    paths: Iterable[str | Path],
    cut: tuple[float, int] = (0.5, 0),
    mix_platforms: bool = False,
    predict_missing: bool = True,
    batch_size: int = 512,
    device: str = "cpu",
) -> list[Member]:
    """Every network of the pool, checked (see `check_pool`), names made unique."""
    folders = member_folders(paths)
    members = [load_member(f, cut, predict_missing, batch_size, device) for f in folders]
    if not members:
        raise ConfigError("the pool is empty: pool=[<sweep dir or run>, ...]")
    check_pool(members, mix_platforms)
    return unique_names(members)


@dataclass(frozen=True)
class RankOptions:
    """How pairs are ranked: scores tried, post-check, ε (a fraction), the cost minimised, the
    threshold grid's size and where a pair is judged."""

    scores: tuple[str, ...] = ("maxp", "margin", "entropy")
    postcheck: bool = False
    epsilon: float = 0.003
    cost_metric: str = "energy_uj"
    thresholds: int = 2001
    rank_on: str = "holdout"


def _point(little: Member, big: Member, view: str, score: str, pc: bool, t: float) -> dict:
    """Accuracy, big share and expected costs of the cascade on one view at threshold t."""
    out = pair_outputs(
        little.preds[view].logits, big.preds[view].logits, little.preds[view].labels, score, pc
    )
    acc, p_big = at_threshold(out, t)
    point = {"acc": acc, "p_big": p_big, "acc_big": big.acc(view), "acc_little": little.acc(view)}
    for metric in COST_METRICS:
        point[EXPECTED_KEY[metric]] = little.cost.get(metric) + p_big * big.cost.get(metric)
    return point


def pair_row(little: Member, big: Member, score: str, opts: RankOptions) -> dict[str, Any]:
    """One ranking row: the near-big threshold chosen on `select`, its points on select,
    holdout and test, whether it keeps acc ≥ big − ε on `rank_on`, and its saving there."""
    sel = little.preds["select"]
    outputs = pair_outputs(
        sel.logits, big.preds["select"].logits, sel.labels, score, opts.postcheck
    )
    curve = build_curve(outputs, threshold_grid(opts.thresholds), little.cost, big.cost)
    index = choose_near_big(curve, big.acc("select"), opts.epsilon, opts.cost_metric)
    row: dict[str, Any] = {
        "little": little.name,
        "big": big.name,
        "score": score,
        "postcheck": opts.postcheck,
        "threshold": math.nan,
        "meets": False,
        "saving": -math.inf,
        **{f"{m}_little": little.cost.get(m) for m in COST_METRICS},
        **{f"{m}_big": big.cost.get(m) for m in COST_METRICS},
    }
    if index is None:
        return row
    t = float(curve.thresholds[index])
    row["threshold"] = t
    for view in ("select", "holdout", "test"):
        for key, value in _point(little, big, view, score, opts.postcheck, t).items():
            row[f"{key}_{view}"] = value
    judged = opts.rank_on
    row["meets"] = bool(row[f"acc_{judged}"] >= row[f"acc_big_{judged}"] - opts.epsilon - 1e-12)
    expected = row[f"{EXPECTED_KEY[opts.cost_metric]}_{judged}"]
    row["saving"] = 1.0 - expected / big.cost.get(opts.cost_metric)
    for metric in COST_METRICS:
        row[f"{metric}_saving_test"] = 1.0 - row[f"{EXPECTED_KEY[metric]}_test"] / big.cost.get(
            metric
        )
    return row


def rank_pool(members: Sequence[Member], opts: RankOptions) -> list[dict[str, Any]]:
    """Every (little, big, score) with cost(little) < cost(big) and big more accurate on val's
    `select` part (else little alone beats the pair): first those that keep acc ≥ big − ε on
    `rank_on`, by saving there (then accuracy), then the others."""
    if opts.rank_on not in RANK_ON:
        raise ConfigError(f"rank_on must be one of {RANK_ON}, got {opts.rank_on!r}")
    rows = []
    for little in members:
        for big in members:
            c_little, c_big = little.cost.get(opts.cost_metric), big.cost.get(opts.cost_metric)
            if not (math.isfinite(c_little) and math.isfinite(c_big) and c_little < c_big):
                continue
            if big.acc("select") <= little.acc("select"):  # no cascade: little alone is better
                continue
            rows.extend(pair_row(little, big, score, opts) for score in opts.scores)
    acc_key = f"acc_{opts.rank_on}"
    rows.sort(
        key=lambda r: (
            not r["meets"],
            -r["saving"],
            -r.get(acc_key, -math.inf),
            r["little"],
            r["big"],
            r["score"],
        )
    )
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def best_per_score(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The top-ranked row of each score among those that meet the accuracy condition."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["meets"] and row["score"] not in best:
            best[row["score"]] = row
    return best


def member_rows(members: Sequence[Member]) -> list[dict[str, Any]]:
    """The pool as a table: name, folder, platform, cost, accuracy on each view."""
    return [
        {
            "name": m.name,
            "folder": str(m.folder),
            "platform": m.platform,
            **{metric: m.cost.get(metric) for metric in COST_METRICS},
            **{f"acc_{view}": m.acc(view) for view in VIEWS},
        }
        for m in members
    ]
