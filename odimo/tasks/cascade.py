# SPDX-License-Identifier: Apache-2.0
"""The cascade task: a (little, big) pair of networks from their cached predictions.

The threshold is chosen on the VALIDATION split (or fixed by the user) and reported on test.
`python tasks/cascade.py little=<run> big=<run> score=margin postcheck=false memory=none
output_dir=<dir>` writes `cascade_curve.csv`, `cascade_curve.png` and `cascade.json` (see
docs/cascade.md for every field). With `-m`, each job writes into `<output_dir>/<overrides>/`.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from odimo.cascade.curve import (
    CHOICES,
    Curve,
    build_curve,
    choose_budget,
    choose_max_acc,
    choose_near_big,
)
from odimo.cascade.expected_cost import COST_METRICS, NetCost, worst_case_cost
from odimo.cascade.memory import MEMORIES
from odimo.cascade.plots import plot_curves
from odimo.cascade.preds import SPLITS, Predictions, check_pair, info_cost, load_run
from odimo.cascade.routing import PairOutputs, at_threshold, pair_outputs, threshold_grid
from odimo.cascade.scores import canonical
from odimo.cascade.stream import memory_report
from odimo.errors import ConfigError

FORMAT = "odimo.cascade/1"
CURVE_COLUMNS = (
    "threshold",
    *(
        f"{s}_{k}"
        for s in SPLITS
        for k in ("acc", "p_big", "latency_expected_ms", "energy_expected_uj")
    ),
)


@dataclass(frozen=True)
class CascadeOptions:
    """Validated task settings (see conf/cascade.yaml)."""

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
    lookup: NetCost = NetCost(0.0, 0.0)
    out_dir: Path = Path(".")


def _number(cfg: DictConfig, key: str, low: float, high: float, allow_none: bool = False):
    value = cfg.get(key)
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not low <= float(value) <= high:
        raise ConfigError(f"{key} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def _run_dir(cfg: DictConfig, key: str) -> Path | None:
    value = cfg.get(key)
    if value in (None, ""):
        return None
    path = Path(str(value)).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"{key}={path} is not a directory (a run folder with preds/)")
    return path


def _out_dir(cfg: DictConfig) -> Path:
    """output_dir, or this job's sub-folder of it in a multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return Path(hc.runtime.output_dir)
    except ValueError:  # no Hydra run (the task called as a function)
        pass
    return Path(str(cfg.output_dir)).expanduser().resolve()


def parse_options(cfg: DictConfig) -> CascadeOptions:
    """Check the config; ConfigError with a one-line message."""
    little = _run_dir(cfg, "little")
    if little is None:
        raise ConfigError("little is required: python tasks/cascade.py little=<run> big=<run>")
    if cfg.get("output_dir") in (None, ""):
        raise ConfigError("output_dir is required: where cascade.json and the curve go")
    if cfg.get("choose") not in CHOICES:
        raise ConfigError(f"choose must be one of {CHOICES}, got {cfg.get('choose')!r}")
    if cfg.get("cost_metric") not in COST_METRICS:
        raise ConfigError(f"cost_metric must be one of {COST_METRICS}")
    if cfg.get("memory") not in MEMORIES:
        raise ConfigError(f"memory must be one of {MEMORIES}, got {cfg.get('memory')!r}")
    thresholds = cfg.get("thresholds")
    if isinstance(thresholds, bool) or not isinstance(thresholds, int) or thresholds < 2:
        raise ConfigError(f"thresholds must be an integer >= 2, got {thresholds!r}")
    budget = {k: _number(cfg.budget, k, 0.0, math.inf, True) for k in COST_METRICS}
    if (
        cfg.choose == "budget"
        and cfg.get("threshold") is None
        and all(v is None for v in budget.values())
    ):
        raise ConfigError("choose=budget needs budget.latency_ms and/or budget.energy_uj")
    memory_cfg = OmegaConf.to_container(cfg.memory_stream, resolve=True)
    return CascadeOptions(
        little=little,
        big=_run_dir(cfg, "big"),
        score=canonical(str(cfg.score)),
        postcheck=bool(cfg.postcheck),
        threshold=_number(cfg, "threshold", 0.0, 1.0, allow_none=True),
        choose=str(cfg.choose),
        epsilon=_number(cfg, "epsilon", 0.0, 1.0),
        cost_metric=str(cfg.cost_metric),
        budget=budget,
        thresholds=thresholds,
        memory=str(cfg.memory),
        memory_cfg=memory_cfg,
        lookup=NetCost(*(_number(cfg.lookup, k, 0.0, math.inf) for k in COST_METRICS)),
        out_dir=_out_dir(cfg),
    )


@dataclass
class Pair:
    """Both networks' predictions per split, infos and costs (big = None: a single network)."""

    little: dict[str, Predictions]
    big: dict[str, Predictions]
    infos: tuple[dict[str, Any], dict[str, Any] | None]
    costs: tuple[NetCost, NetCost]

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
    costs = (info_cost(infos[0]), info_cost(infos[1]) if infos[1] else NetCost(0.0, 0.0))
    return Pair(little, big, (infos[0], infos[1]), costs)


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
    little, big = pair.costs
    out = {"acc": acc, "p_big": p_big}
    for metric, key in (("latency_ms", "latency_expected_ms"), ("energy_uj", "energy_expected_uj")):
        out[key] = little.get(metric) + p_big * big.get(metric) + opts.lookup.get(metric)
    return out


def pick_threshold(opts: CascadeOptions, pair: Pair, val_curve: Curve) -> tuple[float, str, dict]:
    """The threshold to report, where it comes from, and all three choices (val and test)."""
    acc_big = pair.big["val"].acc
    indices = choose_all(opts, val_curve, acc_big) if opts.big is not None else {}
    choices = {}
    for name, index in indices.items():
        if index is None:
            choices[name] = None
            continue
        t = float(val_curve.thresholds[index])
        choices[name] = {
            "threshold": t,
            "val": val_curve.row(index),
            "test": _split_point(pair, opts, "test", t),
        }
    if opts.big is None:
        return 0.0, "single network", choices
    if opts.threshold is not None:
        return opts.threshold, "fixed", choices
    if choices[opts.choose] is None:
        raise ConfigError(
            f"no threshold satisfies choose={opts.choose} on val (loosen the budget or epsilon)"
        )
    return choices[opts.choose]["threshold"], f"val:{opts.choose}", choices


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
        report.update(acc_no_memory=point["acc"], p_big_no_memory=point["p_big"])
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


def write_curve_csv(path: Path, curves: dict[str, Curve]) -> Path:
    """cascade_curve.csv: one row per threshold, val and test columns side by side."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CURVE_COLUMNS)
        val, test = curves["val"], curves["test"]
        for i, t in enumerate(val.thresholds):
            row = [f"{t:.6g}"]
            for c in (val, test):
                row += [
                    f"{c.acc[i]:.6g}",
                    f"{c.p_big[i]:.6g}",
                    f"{c.latency_ms[i]:.6g}",
                    f"{c.energy_uj[i]:.6g}",
                ]
            writer.writerow(row)
    return path


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _net(info: dict[str, Any] | None, cost: NetCost) -> dict[str, Any] | None:
    if info is None:
        return None
    keep = ("name", "source", "run_dir", "model", "dataset")
    return {
        **{k: info.get(k) for k in keep},
        "latency_ms": cost.latency_ms,
        "energy_uj": cost.energy_uj,
    }


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the cascade and write its outputs; returns the content of cascade.json."""
    opts = parse_options(cfg)
    pair = load_pair(opts)
    grid = threshold_grid(opts.thresholds)
    curves = {
        s: build_curve(
            pair.outputs(s, opts.score, opts.postcheck), grid, *pair.costs, lookup=opts.lookup
        )
        for s in SPLITS
    }
    threshold, source, choices = pick_threshold(opts, pair, curves["val"])
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
        "val": {
            **_split_point(pair, opts, "val", threshold),
            "acc_little": pair.little["val"].acc,
            "acc_big": pair.big["val"].acc if opts.big is not None else None,
        },
        "test": test_report(opts, pair, threshold),
        "choices": choices,
        "settings": {
            "epsilon": opts.epsilon,
            "cost_metric": opts.cost_metric,
            "budget": opts.budget,
            "thresholds": opts.thresholds,
            "lookup": {"latency_ms": opts.lookup.latency_ms, "energy_uj": opts.lookup.energy_uj},
            "memory_stream": opts.memory_cfg if opts.memory != "none" else None,
        },
    }
    result = _json_safe(result)
    write_outputs(opts.out_dir, result, curves, pair)
    print_summary(result, opts.out_dir)
    return result


def write_outputs(out: Path, result: dict[str, Any], curves: dict[str, Curve], pair: Pair) -> None:
    """cascade.json, cascade_curve.csv and cascade_curve.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "cascade.json").write_text(
        json.dumps(result, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8"
    )
    write_curve_csv(out / "cascade_curve.csv", curves)
    singles = {
        f"{result['little']['name']} (test)": (pair.costs[0].energy_uj, pair.little["test"].acc)
    }
    if result["big"] is not None:
        singles[f"{result['big']['name']} (test)"] = (pair.costs[1].energy_uj, pair.big["test"].acc)
    acc = result["test"].get("acc_no_memory", result["test"]["acc"])
    chosen = {f"t={result['threshold']:.3f} (test)": (_point_energy(result, pair), acc)}
    plot_curves(curves, singles, chosen, out / "cascade_curve.png", title=result["label"])


def _point_energy(result: dict[str, Any], pair: Pair) -> float:
    """Expected energy of the chosen test point without the memory (the curve's x axis)."""
    t = result["test"]
    p_big = t.get("p_big_no_memory", t["p_big"])
    lookup = result["settings"]["lookup"]["energy_uj"]
    return pair.costs[0].energy_uj + p_big * pair.costs[1].energy_uj + lookup


def print_summary(result: dict[str, Any], out: Path) -> None:
    """A few lines: threshold, accuracies, big share, expected costs."""
    t = result["test"]

    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * v:.2f} %"

    print(f"{result['label']}: threshold {result['threshold']:.4f} ({result['threshold_source']})")
    print(
        f"  test acc {pct(t['acc'])}  (little {pct(t['acc_little'])}, big {pct(t['acc_big'])}, "
        f"oracle {pct(t['acc_oracle'])}); sent to big {pct(t['p_big'])}; "
        f"memory hits {pct(t['hit_rate'])}"
    )
    print(
        f"  expected energy {t['energy_expected_uj']:.4g} µJ, latency "
        f"{t['latency_expected_ms']:.4g} ms (worst {t['energy_worst_uj']:.4g} µJ, "
        f"{t['latency_worst_ms']:.4g} ms)"
    )
    print(f"wrote cascade.json, cascade_curve.csv and cascade_curve.png to {out}")
