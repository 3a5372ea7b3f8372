# SPDX-License-Identifier: Apache-2.0
"""The cascade task: a (little, big) pair of networks from their cached predictions.

The validation split is cut in two: the threshold is chosen on its `select` part (or fixed by
the user) and reported on its `holdout` part and on test.
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


def _one_of(cfg: DictConfig, key: str, allowed) -> Any:
    """cfg[key], which must be one of `allowed` (one line naming both otherwise)."""
    value = cfg.get(key)
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {tuple(allowed)}, got {value!r}")
    return value


def _thresholds(cfg: DictConfig) -> int:
    """thresholds: how many evenly spaced thresholds a curve scans (an integer >= 2)."""
    value = cfg.get("thresholds")
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ConfigError(f"thresholds must be an integer >= 2, got {value!r}")
    return value


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


def _holdout_fraction(cfg: DictConfig) -> float:
    """holdout_fraction, strictly between 0 and 1 (both parts of val must hold images)."""
    value = _number(cfg, "holdout_fraction", 0.0, 1.0)
    if value in (0.0, 1.0):
        raise ConfigError(f"holdout_fraction must lie strictly between 0 and 1, got {value!r}")
    return value


def parse_options(cfg: DictConfig) -> CascadeOptions:
    """Check the config; ConfigError with a one-line message."""
    little = _run_dir(cfg, "little")
    if little is None:
        raise ConfigError("little is required: python tasks/cascade.py little=<run> big=<run>")
    if cfg.get("output_dir") in (None, ""):
        raise ConfigError("output_dir is required: where cascade.json and the curve go")
    for key, allowed in (("choose", CHOICES), ("cost_metric", COST_METRICS), ("memory", MEMORIES)):
        _one_of(cfg, key, allowed)
    thresholds = _thresholds(cfg)
    budget = {k: _number(cfg.budget, k, 0.0, math.inf, True) for k in COST_METRICS}
    if (
        cfg.choose == "budget"
        and cfg.get("threshold") is None
        and all(v is None for v in budget.values())
    ):
        raise ConfigError("choose=budget needs budget.latency_ms and/or budget.energy_uj")
    memory_cfg = OmegaConf.to_container(cfg.memory_stream, resolve=True)
    seed = cfg.get("split_seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"split_seed must be an integer, got {seed!r}")
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
        holdout_fraction=_holdout_fraction(cfg),
        split_seed=seed,
        lookup=NetCost(*(_number(cfg.lookup, k, 0.0, math.inf) for k in COST_METRICS)),
        out_dir=_out_dir(cfg),
        mix_platforms=bool(cfg.get("mix_platforms", False)),
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
    acc = _plain(result["test"], "acc")
    chosen = {f"t={result['threshold']:.3f} (test)": (_point_energy(result, pair), acc)}
    plot_curves(curves, singles, chosen, out / "cascade_curve.png", title=result["label"])


def _point_energy(result: dict[str, Any], pair: Pair) -> float:
    """Expected energy of the chosen test point without the memory (the curve's x axis)."""
    t = result["test"]
    p_big = _plain(t, "p_big")
    lookup = result["settings"]["lookup"]["energy_uj"]
    return pair.costs[0].energy_uj + p_big * pair.costs[1].energy_uj + lookup


def _plain(test: dict[str, Any], key: str) -> float:
    """`acc` or `p_big` of the cascade alone on the plain test split (older files: the
    no-memory figure, then the reported one)."""
    return test.get(f"{key}_split", test.get(f"{key}_no_memory", test[key]))


def print_summary(result: dict[str, Any], out: Path) -> None:
    """A few lines: threshold, accuracies, big share, expected costs."""
    t = result["test"]

    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * v:.2f} %"

    print(f"{result['label']}: threshold {result['threshold']:.4f} ({result['threshold_source']})")
    v = result["val"]
    if "holdout" in v:
        print(
            f"  val holdout acc {pct(v['acc_holdout'])} on {v['holdout']['n']} images "
            f"(threshold chosen on the other {v['select']['n']})"
        )
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
    chip, noise = t.get("chip"), result.get("noise")
    if chip is None:
        print("  accuracies of the noiseless chip (no shared read-out noise draws)")
    else:
        print(
            f"  under read-out noise (σ = {noise['sigma_lsb']:g} LSB, {noise['draws']} draws): "
            f"test acc {pct(chip['acc_mean'])} ± {100 * chip['acc_std']:.2f} (little "
            f"{pct(chip['acc_little_mean'])}, big {pct(chip['acc_big_mean'])}); sent to big "
            f"{pct(chip['p_big_mean'])}; expected energy {chip['energy_expected_uj']:.4g} µJ"
        )
    print(f"wrote cascade.json, cascade_curve.csv and cascade_curve.png to {out}")
