# SPDX-License-Identifier: Apache-2.0
"""The cascade task: a (little, big) pair of networks from their cached predictions.

The threshold is chosen on the VALIDATION split (or fixed by the user) and reported on test.
`python tasks/cascade.py little=<run> big=<run> score=margin postcheck=false memory=none
output_dir=<dir>` writes `cascade_curve.csv`, `cascade_curve.png` and `cascade.json` (see
docs/cascade.md for every field). With `-m`, each job writes into `<output_dir>/<overrides>/`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from odimo.cascade.curve import CHOICES, Curve
from odimo.cascade.evaluation import CascadeOptions, Pair, evaluate_cascade
from odimo.cascade.expected_cost import COST_METRICS, NetCost
from odimo.cascade.memory import MEMORIES
from odimo.cascade.plots import plot_curves
from odimo.cascade.preds import SPLITS
from odimo.cascade.scores import canonical
from odimo.errors import ConfigError
from odimo.io import write_csv, write_json

CURVE_COLUMNS = (
    "threshold",
    *(
        f"{s}_{k}"
        for s in SPLITS
        for k in ("acc", "p_big", "latency_expected_ms", "energy_expected_uj")
    ),
)


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


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the cascade and write its outputs; returns the content of cascade.json."""
    opts = parse_options(cfg)
    result, curves, pair = evaluate_cascade(opts)
    write_outputs(opts.out_dir, result, curves, pair)
    print_summary(result, opts.out_dir)
    return result


def write_curve_csv(path: Path, curves: dict[str, Curve]) -> Path:
    """cascade_curve.csv: one row per threshold, val and test columns side by side."""
    val, test = curves["val"], curves["test"]
    rows = []
    for i, t in enumerate(val.thresholds):
        row = [f"{t:.6g}"]
        for c in (val, test):
            row += [f"{v[i]:.6g}" for v in (c.acc, c.p_big, c.latency_ms, c.energy_uj)]
        rows.append(row)
    return write_csv(path, CURVE_COLUMNS, rows)


def write_outputs(out: Path, result: dict[str, Any], curves: dict[str, Curve], pair: Pair) -> None:
    """cascade.json, cascade_curve.csv and cascade_curve.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "cascade.json", result, ensure_ascii=False)
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
