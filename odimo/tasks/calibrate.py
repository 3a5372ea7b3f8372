# SPDX-License-Identifier: Apache-2.0
"""The calibrate task: fit a platform's constants to measured per-layer cycles (and energy).

Writes into `output_dir`: `<name>.yaml` (the calibrated platform, same format as
`conf/platform/diana.yaml`), `calibration.json` (constants before/after, errors, rank
correlation, selection regret) and `predictions.csv` (per row: measured, prior, calibrated).
With `install=true` the YAML is also copied to `conf/platform/<name>.yaml`, so that
`python train.py platform=<name>` trains against the calibrated cost model.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from odimo.calibration.fit import (
    evaluate,
    fit_platform,
    kfold_errors,
    predictions,
    read_measurements,
)
from odimo.errors import ConfigError
from odimo.hw import get_platform, platform_to_config, user_platform_dir
from odimo.io import atomic_write_text, write_csv


def _options(cfg: DictConfig) -> tuple[Path, str, Path]:
    """measurements path, calibrated name and output dir, checked."""
    if OmegaConf.is_missing(cfg, "measurements") or cfg.get("measurements") in (None, ""):
        raise ConfigError("measurements is required: python tasks/calibrate.py measurements=<csv>")
    name = str(cfg.name)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"name must be a plain file name (letters, digits, _ . -), got {name!r}")
    out_dir = Path(str(cfg.output_dir)).expanduser().resolve()
    return Path(str(cfg.measurements)).expanduser(), name, out_dir


def write_platform_yaml(path: Path, config: dict[str, Any], note: str) -> Path:
    """A platform YAML with a comment header saying where its numbers come from."""
    body = yaml.safe_dump(config, sort_keys=False)
    atomic_write_text(path, f"# {note}\n{body}")
    return path


PREDICTION_COLUMNS = (
    "name",
    "group",
    "measured_latency_cycles",
    "prior_latency_cycles",
    "calibrated_latency_cycles",
    "measured_energy_mw_cycles",
    "prior_energy_mw_cycles",
    "calibrated_energy_mw_cycles",
)


def _predictions_csv(path: Path, data, prior, calibrated) -> None:
    before, after = predictions(prior, data), predictions(calibrated, data)
    rows = []
    for i, g in enumerate(data.geometry):
        energy = float(data.energy[i]) if data.energy is not None else ""
        rows.append(
            [
                g.name,
                data.groups[i],
                f"{float(data.latency[i]):.6g}",
                f"{before['latency_cycles'][i]:.6g}",
                f"{after['latency_cycles'][i]:.6g}",
                energy,
                f"{before['energy_mw_cycles'][i]:.6g}",
                f"{after['energy_mw_cycles'][i]:.6g}",
            ]
        )
    write_csv(path, PREDICTION_COLUMNS, rows)


def _print(report: dict[str, Any]) -> None:
    """Constants and error table on stdout."""
    print(f"{'constant':28s} {'prior':>12s} {'calibrated':>12s}")
    for k, v in report["constants"]["calibrated"].items():
        prior = report["constants"]["prior"][k]
        if v != prior:
            print(f"{k:28s} {prior:12.5g} {v:12.5g}")
    for what in ("latency", "energy"):
        if what in report["held_out"]:
            r = report["held_out"][what]
            print(
                f"{what:8s} held-out   median err {100 * r['median_rel_error']:6.2f} %  "
                f"p90 {100 * r['p90_rel_error']:6.2f} %  spearman {r['spearman']:.4f}  "
                f"({report['held_out']['folds']}-fold by layer group)"
            )
        if what not in report["prior"]:
            continue
        for label in ("prior", "calibrated"):
            r = report[label][what]
            s = r["selection"]
            print(
                f"{what:8s} {label:10s} median err {100 * r['median_rel_error']:6.2f} %  "
                f"p90 {100 * r['p90_rel_error']:6.2f} %  spearman {r['spearman']:.4f}  "
                f"regret mean {100 * s['mean_regret']:.2f} % max {100 * s['max_regret']:.2f} % "
                f"({s['wrong']}/{s['groups']} groups mis-chosen)"
            )


def run(cfg: DictConfig) -> dict[str, Any]:
    """Fit, evaluate and write the calibrated platform; return the report."""
    measurements, name, out_dir = _options(cfg)
    prior = get_platform(cfg.platform)
    if not prior.calibratable:
        raise ConfigError(f"platform {prior.name} declares no calibration terms")
    data = read_measurements(measurements, prior)
    calibrated = fit_platform(prior, data, name)
    report = {
        "measurements": str(measurements),
        "rows": len(data.geometry),
        "platform": prior.name,
        "name": name,
        "constants": {
            "prior": asdict(prior.constants),
            "calibrated": asdict(calibrated.constants),
        },
        "prior": evaluate(prior, data),
        "calibrated": evaluate(calibrated, data),
        "held_out": kfold_errors(prior, data, int(cfg.get("folds", 5))),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    note = f"{name}: {prior.name} calibrated on {measurements.name} ({len(data.geometry)} rows)"
    config = platform_to_config(calibrated)
    paths = {"platform_yaml": write_platform_yaml(out_dir / f"{name}.yaml", config, note)}
    if cfg.install:
        paths["installed_yaml"] = write_platform_yaml(
            user_platform_dir() / f"{name}.yaml", config, note
        )
    paths["calibration_json"] = out_dir / "calibration.json"
    paths["predictions_csv"] = out_dir / "predictions.csv"
    clean = json.loads(json.dumps(report), parse_constant=lambda c: None)
    atomic_write_text(paths["calibration_json"], json.dumps(clean, indent=1) + "\n")
    _predictions_csv(paths["predictions_csv"], data, prior, calibrated)
    _print(report)
    where = user_platform_dir() if cfg.install else out_dir
    print(
        f"wrote {name}.yaml to {where}"
        + ("" if cfg.install else f" (install=true copies it to {user_platform_dir()})")
    )
    report["paths"] = {k: str(v) for k, v in paths.items()}
    return report
