# SPDX-License-Identifier: Apache-2.0
"""Evaluating a (little, big) cascade from cached predictions: curves, threshold, test report.

The validation split is cut in two (odimo.cascade.holdout): the threshold is chosen on `select`
(or fixed by the user), reported on `holdout` and on test; `evaluate_cascade` returns the
content of cascade.json (see docs/cascade.md for every field).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from odimo.cascade.curve import Curve, build_curve, choose_budget, choose_max_acc, choose_near_big
from odimo.cascade.expected_cost import NetCost, worst_case_cost
from odimo.cascade.holdout import PARTS, split_val, subset
from odimo.cascade.preds import SPLITS, Predictions, check_pair, info_cost, load_run
from odimo.cascade.routing import PairOutputs, at_threshold, pair_outputs, threshold_grid
from odimo.cascade.stream import memory_report
from odimo.errors import ConfigError
from odimo.hw import platform_key
from odimo.io import json_safe
from odimo.lit.chip import draw_summary

FORMAT = "odimo.cascade/1"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CascadeOptions:
    """Settings of a cascade evaluation (the keys of conf/cascade.yaml, validated)."""

    little: Path
    big: Path | None
    score: str
    postcheck: bool
    threshold: float | None
    choose: str
    epsilon: float
    cost_metric: str
    budget: dict[str, float | None]
    thresholds: int
    memory: str
    memory_cfg: dict[str, Any] = field(default_factory=dict)
    holdout_fraction: float = 0.5
    split_seed: int = 0
    lookup: NetCost = NetCost(0.0, 0.0)
    out_dir: Path = Path(".")
    mix_platforms: bool = False


@dataclass
class Pair:
    """Both networks' predictions per split (and per part of val: `select`, `holdout`), infos
    and costs (big = None: a single network); `noise`: the read-out noise both networks'
    noise-draw predictions share (None: the cascade is judged noiseless only)."""

    little: dict[str, Predictions]
    big: dict[str, Predictions]
    infos: tuple[dict[str, Any], dict[str, Any] | None]
    costs: tuple[NetCost, NetCost]
    noise: dict[str, Any] | None = None

    def outputs(self, split: str, score: str, postcheck: bool) -> PairOutputs:
        little, big = self.little[split], self.big[split]
        return pair_outputs(little.logits, big.logits, little.labels, score, postcheck)


def load_pair(opts: CascadeOptions) -> Pair:
    """Load and cross-check the predictions of both networks on val and test."""
    little, big, infos = {}, {}, [None, None]
    for split in SPLITS:
        little[split], infos[0] = load_run(opts.little, split)
        if opts.big is None:  # a single-network run: "big" never runs and costs nothing
            big[split] = little[split]
            continue
        big[split], infos[1] = load_run(opts.big, split)
        check_pair(little[split], big[split])
    if infos[1] is not None and infos[0].get("dataset") != infos[1].get("dataset"):
        raise ConfigError(
            f"little is on {infos[0].get('dataset')} but big on {infos[1].get('dataset')}"
        )
    if infos[1] is not None and not opts.mix_platforms:
        keys = [platform_key(i.get("platform")) for i in infos]
        if None not in keys and keys[0] != keys[1]:
            raise ConfigError(
                f"little was costed on platform {keys[0]} but big on {keys[1]}: their costs do "
                "not add up (mix_platforms=true if they really run on two chips)"
            )
    costs = (info_cost(infos[0]), info_cost(infos[1]) if infos[1] else NetCost(0.0, 0.0))
    noise = pair_noise(infos[0], infos[1] if opts.big is not None else infos[0])
    if noise is not None:
        for preds in (little, big):
            for split in SPLITS:
                preds[split] = with_draws(preds[split], noise["draws"])
    parts = split_val(len(little["val"]), opts.holdout_fraction, opts.split_seed)
    for part in PARTS:
        little[part] = subset(little["val"], parts[part], part)
        big[part] = subset(big["val"], parts[part], part)
    return Pair(little, big, (infos[0], infos[1]), costs, noise)


def pair_noise(little: dict[str, Any], big: dict[str, Any]) -> dict[str, Any] | None:
    """The read-out noise under which the cascade can be judged: both networks' noise-draw
    predictions have the same σ, snr and draws, or one of them has no analog read-out at all
    (its outputs are the same in every draw). None (noiseless only) otherwise, with a warning
    when one network has draws the other lacks."""
    noises = [info.get("noise") for info in (little, big)]
    if not any(noises):
        return None
    without = [info.get("read_out") is False for info in (little, big)]
    known = [n for n, w in zip(noises, without) if not w]
    if all(known) and all(n == known[0] for n in known):
        return dict(known[0]) if known else None
    names = [info.get("name") for info in (little, big)]
    log.warning(
        "the cascade is judged without read-out noise: %s and %s do not share noise-draw "
        "predictions (%s vs %s); run tasks/predict.py with the same noise_draws on both",
        *names,
        *noises,
    )
    return None


def with_draws(preds: Predictions, draws: int) -> Predictions:
    """`preds` with noise-draw logits: its own, or (a network without an analog read-out) its
    noiseless logits in every draw."""
    if preds.noisy is not None:
        return preds
    return replace(preds, noisy=np.broadcast_to(preds.logits, (draws, *preds.logits.shape)))


def choose_all(opts: CascadeOptions, curve: Curve, acc_big: float) -> dict[str, int | None]:
    """Index into the validation curve of each of the three choices (None: infeasible)."""
    has_budget = any(v is not None for v in opts.budget.values())
    return {
        "max_acc": choose_max_acc(curve),
        "budget": choose_budget(curve, **opts.budget) if has_budget else None,
        "near_big": choose_near_big(curve, acc_big, opts.epsilon, opts.cost_metric),
    }


def _split_point(pair: Pair, opts: CascadeOptions, split: str, threshold: float) -> dict:
    """Accuracy, big share and expected costs (no memory) of one split at one threshold."""
    acc, p_big = at_threshold(pair.outputs(split, opts.score, opts.postcheck), threshold)
    return {"acc": acc, "p_big": p_big, **_expected_costs(pair, opts, p_big)}


def _expected_costs(pair: Pair, opts: CascadeOptions, p_big: float) -> dict[str, float]:
    """Expected latency and energy per input (no memory) when a share p_big goes to big."""
    little, big = pair.costs
    keys = (("latency_ms", "latency_expected_ms"), ("energy_uj", "energy_expected_uj"))
    return {
        key: little.get(metric) + p_big * big.get(metric) + opts.lookup.get(metric)
        for metric, key in keys
    }


def _chip_point(pair: Pair, opts: CascadeOptions, split: str, threshold: float) -> dict | None:
    """`_split_point` under read-out noise: the accuracy of each draw (draw d of little with
    draw d of big) as mean ± std, the big share and expected costs as means; the networks'
    own accuracies too. None when the pair has no shared noise draws (`pair_noise`)."""
    if pair.noise is None:
        return None
    little, big = pair.little[split], pair.big[split]
    accs, shares = [], []
    for d in range(pair.noise["draws"]):
        out = pair_outputs(little.noisy[d], big.noisy[d], little.labels, opts.score, opts.postcheck)
        acc, p_big = at_threshold(out, threshold)
        accs.append(acc)
        shares.append(p_big)
    acc = draw_summary(accs)
    p_big = float(np.mean(shares))
    return {
        "acc_mean": acc["mean"],
        "acc_std": acc["std"],
        "p_big_mean": p_big,
        "acc_little_mean": float((little.noisy.argmax(2) == little.labels).mean()),
        "acc_big_mean": float((big.noisy.argmax(2) == big.labels).mean()),
        **_expected_costs(pair, opts, p_big),
    }


def pick_threshold(opts: CascadeOptions, pair: Pair, select: Curve) -> tuple[float, str, dict]:
    """The threshold to report, where it comes from, and all three choices (each chosen on the
    `select` part of val, scored on `holdout` and test)."""
    acc_big = pair.big["select"].acc
    indices = choose_all(opts, select, acc_big) if opts.big is not None else {}
    choices = {}
    for name, index in indices.items():
        if index is None:
            choices[name] = None
            continue
        t = float(select.thresholds[index])
        choices[name] = {
            "threshold": t,
            "val": select.row(index),
            "holdout": _split_point(pair, opts, "holdout", t),
            "test": _split_point(pair, opts, "test", t),
        }
    if opts.big is None:
        return 0.0, "single network", choices
    if opts.threshold is not None:
        return opts.threshold, "fixed", choices
    if choices[opts.choose] is None:
        raise ConfigError(
            f"no threshold satisfies choose={opts.choose} on val's select part "
            "(loosen the budget or epsilon)"
        )
    return choices[opts.choose]["threshold"], f"val_select:{opts.choose}", choices


def val_report(opts: CascadeOptions, pair: Pair, threshold: float) -> dict[str, Any]:
    """The val block of cascade.json: the whole split (as before the cut), each part with its
    size, and `acc_holdout`, the accuracy of the chosen threshold on images it was not chosen on."""
    parts = {
        part: {**_split_point(pair, opts, part, threshold), "n": len(pair.little[part])}
        for part in PARTS
    }
    return {
        **_split_point(pair, opts, "val", threshold),
        "acc_little": pair.little["val"].acc,
        "acc_big": pair.big["val"].acc if opts.big is not None else None,
        "acc_holdout": parts["holdout"]["acc"],
        "acc_big_holdout": pair.big["holdout"].acc if opts.big is not None else None,
        **parts,
        "n": len(pair.little["val"]),
        "chip_holdout": _chip_point(pair, opts, "holdout", threshold),
    }


def test_report(opts: CascadeOptions, pair: Pair, threshold: float) -> dict[str, Any]:
    """The test block of cascade.json (with the memory's stream figures when one is used)."""
    little, big = pair.little["test"], pair.big["test"]
    point = _split_point(pair, opts, "test", threshold)
    oracle = pair.outputs("test", "oracle", opts.postcheck)
    acc_oracle, p_big_oracle = at_threshold(oracle, 1.0)
    report: dict[str, Any] = {
        **point,
        "acc_little": little.acc,
        "acc_big": big.acc if opts.big is not None else None,
        "acc_oracle": acc_oracle if opts.big is not None else None,
        "p_big_oracle": p_big_oracle if opts.big is not None else None,
        "hit_rate": 0.0,
        "n": len(little),
        "acc_split": point["acc"],
        "p_big_split": point["p_big"],
        "chip": _chip_point(pair, opts, "test", threshold),
    }
    c_little, c_big = pair.costs
    if opts.memory != "none":
        mem = memory_report(
            pair.infos,
            (little, big),
            score=opts.score,
            postcheck=opts.postcheck,
            threshold=threshold,
            memory=opts.memory,
            cfg=opts.memory_cfg,
        )
        report.update(acc_no_memory=mem["acc_no_memory"], p_big_no_memory=mem["p_big_no_memory"])
        report.update(acc=mem["acc"], p_big=mem["p_big"], hit_rate=mem["hit_rate"])
        report["memory"] = mem
        for metric, key in (
            ("latency_ms", "latency_expected_ms"),
            ("energy_uj", "energy_expected_uj"),
        ):
            report[key] = (1 - mem["hit_rate"]) * (
                c_little.get(metric) + mem["p_big"] * c_big.get(metric)
            ) + opts.lookup.get(metric)
    for metric, unit in (("latency", "ms"), ("energy", "uj")):
        key = f"{metric}_{unit}"
        report[f"{metric}_worst_{unit}"] = worst_case_cost(
            c_little.get(key), c_big.get(key), opts.lookup.get(key)
        )
        report[f"{metric}_little_{unit}"] = c_little.get(key)
        report[f"{metric}_big_{unit}"] = c_big.get(key) if opts.big is not None else None
        if opts.big is not None:
            report[f"{metric}_saving_vs_big"] = 1 - report[f"{metric}_expected_{unit}"] / c_big.get(
                key
            )
    return report


def _net(info: dict[str, Any] | None, cost: NetCost) -> dict[str, Any] | None:
    if info is None:
        return None
    keep = ("name", "source", "run_dir", "model", "dataset")
    return {
        **{k: info.get(k) for k in keep},
        "latency_ms": cost.latency_ms,
        "energy_uj": cost.energy_uj,
    }


def evaluate_cascade(opts: CascadeOptions) -> tuple[dict[str, Any], dict[str, Curve], Pair]:
    """The cascade.json content, the val/test curves and the loaded pair."""
    pair = load_pair(opts)
    grid = threshold_grid(opts.thresholds)
    curves = {
        s: build_curve(
            pair.outputs(s, opts.score, opts.postcheck), grid, *pair.costs, lookup=opts.lookup
        )
        for s in SPLITS
    }
    select = build_curve(
        pair.outputs("select", opts.score, opts.postcheck), grid, *pair.costs, lookup=opts.lookup
    )
    threshold, source, choices = pick_threshold(opts, pair, select)
    names = (pair.infos[0].get("name"), (pair.infos[1] or {}).get("name"))
    label = (
        names[0]
        if opts.big is None
        else (f"{names[0]}→{names[1]} {opts.score}{'+pc' if opts.postcheck else ''}")
    )
    result = {
        "format": FORMAT,
        "label": label,
        "little": _net(pair.infos[0], pair.costs[0]),
        "big": _net(pair.infos[1], pair.costs[1]),
        "dataset": pair.infos[0].get("dataset"),
        "score": opts.score,
        "postcheck": opts.postcheck,
        "memory": opts.memory,
        "threshold": threshold,
        "threshold_source": source,
        # the accuracies above are the noiseless chip's; "chip" blocks: under this noise
        "noise": pair.noise,
        "val": val_report(opts, pair, threshold),
        "test": test_report(opts, pair, threshold),
        "choices": choices,
        "settings": {
            "epsilon": opts.epsilon,
            "cost_metric": opts.cost_metric,
            "budget": opts.budget,
            "thresholds": opts.thresholds,
            "holdout_fraction": opts.holdout_fraction,
            "split_seed": opts.split_seed,
            "lookup": {"latency_ms": opts.lookup.latency_ms, "energy_uj": opts.lookup.energy_uj},
            "memory_stream": opts.memory_cfg if opts.memory != "none" else None,
        },
    }
    return json_safe(result), curves, pair
