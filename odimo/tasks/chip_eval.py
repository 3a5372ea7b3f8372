# SPDX-License-Identifier: Apache-2.0
"""Chip evaluation task: finished runs' deployed networks on DIANA's analog read-out.

`run_dir=<run>`: loads `<run>/final/model.pt`, rebuilds it on `platform` (whose analog core
reads out through an ADC; a network trained with exact sums gets its gains from a calibration
batch of training images), and reports the ideal accuracy (exact sums) and the chip accuracy at
each σ of `sigmas` (mean ± std over `draws` seeded draws) on the first `images` images of
`split`. Writes `<run>/chip_eval.json`.

`sweep_dir=<sweep>`: every finished run of a sweep the same way (a run whose chip_eval.json
was written with the same settings is read, not evaluated again, unless `force=true`), then one
row per run in `<sweep>/chip_eval.csv` and a table on screen, cheapest first: the table of
docs/chip.md in one command.

`reference_dir=<sweep>` (with `sweep_dir`): a sweep of the same networks and seeds trained with
exact sums, evaluated the same way; per network and σ, how much of the read-out's accuracy drop
the chip-aware runs of `sweep_dir` win back over the reference's (`odimo.analysis.recovery`),
± one standard error over seeds, in `<sweep>/chip_recovery.csv` and on screen.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from odimo.analysis.recovery import COLUMNS as RECOVERY_COLUMNS
from odimo.analysis.recovery import format_rows, noise_label, recovery_rows
from odimo.analysis.sweep import job_label, scan_sweep
from odimo.errors import ConfigError
from odimo.export.run import load_run_config
from odimo.hw import get_platform, with_analog
from odimo.io import atomic_write_text
from odimo.io.tables import write_records_csv
from odimo.lit.chip import accuracy, limited, on_platform, sigma_table
from odimo.models import load_mapped


def run(cfg: DictConfig) -> dict:
    """Evaluate `cfg.run_dir` (or every finished run of `cfg.sweep_dir`) under the chip
    arithmetic; print a table, write chip_eval.json (and the sweep's chip_eval.csv)."""
    run_dir, sweep_dir = cfg.get("run_dir"), cfg.get("sweep_dir")
    if (run_dir in (None, "")) == (sweep_dir in (None, "")):
        raise ConfigError(
            "give exactly one of run_dir=<finished run> or sweep_dir=<sweep>: "
            "python tasks/chip_eval.py run_dir=<run>"
        )
    if cfg.get("threads") is not None:
        torch.set_num_threads(int(cfg.threads))
    chip = get_platform(cfg.platform)
    if chip.analog is None or not chip.analog.enabled:
        raise ConfigError(f"platform {chip.name!r} has no analog read-out (platform.analog.adc)")
    if str(cfg.split) not in ("val", "test"):
        raise ConfigError(f"split must be val or test, got {cfg.split!r}")
    reference_dir = cfg.get("reference_dir")
    if sweep_dir not in (None, ""):
        result = evaluate_sweep(Path(str(sweep_dir)), cfg, chip)
        if reference_dir not in (None, ""):
            result["recovery"] = compare(
                Path(str(sweep_dir)), result, Path(str(reference_dir)), cfg, chip
            )
        return result
    if reference_dir not in (None, ""):
        raise ConfigError("reference_dir=<sweep> compares two sweeps: give sweep_dir=<sweep> too")
    result = evaluate_run(Path(str(run_dir)), cfg, chip)
    print_run(result)
    return result


def settings(cfg: DictConfig, chip) -> dict[str, Any]:
    """What a chip_eval.json's numbers depend on besides the network: a file written with other
    settings is evaluated again in a sweep."""
    return {
        "platform": chip.name,
        "analog": chip.analog.to_config(),
        "sigmas": [float(s) for s in cfg.sigmas],  # (as JSON reads them back: floats)
        "draws": int(cfg.draws),
        "seed": int(cfg.seed),
        "split": str(cfg.split),
        "images": None if cfg.images is None else int(cfg.images),
    }


def evaluate_run(run_dir: Path, cfg: DictConfig, chip) -> dict:
    """One finished run on `chip`: ideal and per-σ chip accuracy; writes chip_eval.json."""
    model_path = run_dir / "final" / "model.pt"
    if not model_path.is_file():
        raise ConfigError(f"{run_dir} has no final/model.pt: is it a finished run?")
    mapped, _, _ = load_mapped(model_path)
    run_cfg = load_run_config(run_dir)
    datamodule = instantiate(run_cfg.dataset.datamodule)
    datamodule.setup("fit")
    datamodule.setup("test")
    loader = {"val": datamodule.val_dataloader, "test": datamodule.test_dataloader}
    images = None if cfg.images is None else int(cfg.images)
    batches = list(limited(loader[str(cfg.split)](), images))
    calibration = next(iter(datamodule.train_dataloader()))[0]
    model = on_platform(mapped, chip, calibration)
    ideal = on_platform(mapped, with_analog(chip, None))
    rows = sigma_table(model, batches, chip.analog.noise, cfg.sigmas, int(cfg.draws), int(cfg.seed))
    result = {
        "run_dir": str(run_dir),
        "split": str(cfg.split),
        "images": sum(len(y) for _, y in batches),
        "ideal_acc": accuracy(ideal, batches),
        "chip": rows,
        "trained_with_adc": bool(mapped_has_readout(mapped)),
        "settings": settings(cfg, chip),
    }
    atomic_write_text(run_dir / "chip_eval.json", json.dumps(result, indent=1) + "\n")
    return result


def print_run(result: dict) -> None:
    """The per-σ lines of one run."""
    print(f"{result['run_dir']}: {result['split']} ({result['images']} images), ideal "
          f"{100 * result['ideal_acc']:.2f} %")  # fmt: skip
    snr = _snr(result["settings"])
    for row in result["chip"]:
        print(f"  {noise_label(row['sigma_lsb'], snr, unit=True)}: {100 * row['mean']:.2f} ± "
              f"{100 * row['std']:.2f} % ({row['draws']} draws)")  # fmt: skip


def _snr(settings: dict[str, Any]) -> float:
    """The relative-noise SNR of chip_eval `settings` (0: additive σ in LSB)."""
    noise = (settings.get("analog") or {}).get("noise") or {}
    return float(noise.get("snr") or 0.0)


def _stored(run_dir: Path, wanted: dict[str, Any]) -> dict | None:
    """The run's chip_eval.json when it was written with `wanted` settings, else None."""
    path = run_dir / "chip_eval.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) and stored.get("settings") == wanted else None


def evaluate_sweep(sweep_dir: Path, cfg: DictConfig, chip, key: str = "sweep_dir") -> dict:
    """Every finished run of a sweep on `chip`; `<sweep>/chip_eval.csv`, one row per run (`key`:
    the config key that gave the sweep, named in errors)."""
    if not sweep_dir.is_dir():
        raise ConfigError(f"{key} {sweep_dir} is not a directory")
    scan = scan_sweep(sweep_dir)
    jobs = [j for j in scan.jobs if (Path(j["job_dir"]) / "final" / "model.pt").is_file()]
    if not jobs:
        raise ConfigError(f"{sweep_dir} holds no finished run with final/model.pt")
    wanted = settings(cfg, chip)
    jobs.sort(key=lambda j: (_finite(j["final/cost/latency_hard_ms"]), j["label"]))
    records = []
    for job in jobs:
        run_dir = Path(job["job_dir"])
        result = None if cfg.get("force") else _stored(run_dir, wanted)
        reused = result is not None
        if result is None:
            result = evaluate_run(run_dir, cfg, chip)
        records.append(sweep_record(job, result, reused))
    columns = list(records[0])
    write_records_csv(sweep_dir / "chip_eval.csv", columns, records)
    print_sweep(records, wanted)
    print(f"wrote {sweep_dir / 'chip_eval.csv'} ({len(records)} runs)")
    return {"sweep_dir": str(sweep_dir), "runs": records, "settings": wanted}


def compare(sweep_dir: Path, ours: dict, reference_dir: Path, cfg: DictConfig, chip) -> list[dict]:
    """The recovery table of `sweep_dir`'s chip-aware runs against `reference_dir`'s exact-sum
    runs of the same networks and seeds; writes `<sweep>/chip_recovery.csv`."""
    theirs = evaluate_sweep(reference_dir, cfg, chip, key="reference_dir")
    aware = [r for r in ours["runs"] if r["trained_with_adc"]]
    exact = [r for r in theirs["runs"] if not r["trained_with_adc"]]
    try:
        rows = recovery_rows(aware, exact)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if not rows:
        raise ConfigError(
            f"no chip-aware run of {sweep_dir} has an exact-sum run of the same network, model, "
            f"dataset and seed in {reference_dir}: train the reference with "
            "platform.analog.adc=null and the same overrides"
        )
    write_records_csv(sweep_dir / "chip_recovery.csv", list(RECOVERY_COLUMNS), rows)
    print(f"recovery of the read-out's drop, chip-aware ({sweep_dir.name}) vs exact sums "
          f"({reference_dir.name}); ± one standard error over seeds")  # fmt: skip
    print("\n".join(format_rows(rows)))
    print(f"wrote {sweep_dir / 'chip_recovery.csv'} ({len(rows)} rows)")
    return rows


def _finite(value: float) -> float:
    return value if isinstance(value, float) and math.isfinite(value) else math.inf


def sweep_record(job: dict, result: dict, reused: bool) -> dict[str, Any]:
    """One CSV row: the run, its cost, and its accuracies (fractions) under the chip model."""
    seed = job.get("seed", math.nan)
    record = {
        "label": job["label"],
        "network": job_label(job),
        "model": job.get("model"),
        "dataset": job.get("dataset"),
        "seed": int(seed) if isinstance(seed, float) and math.isfinite(seed) else None,
        "latency_ms": job["final/cost/latency_hard_ms"],
        "energy_uj": job["final/cost/energy_hard_uj"],
        "analog_frac": job["final/arch/cheap_frac"],
        "trained_with_adc": result["trained_with_adc"],
        "images": result["images"],
        "ideal": result["ideal_acc"],
        "noise_snr": _snr(result["settings"]),
    }
    for row in result["chip"]:
        sigma = f"{row['sigma_lsb']:g}"
        record[f"sigma_{sigma}_mean"] = row["mean"]
        record[f"sigma_{sigma}_std"] = row["std"]
    record["reused"] = reused
    record["run_dir"] = result["run_dir"]
    return record


def print_sweep(records: list[dict[str, Any]], wanted: dict[str, Any]) -> None:
    """The sweep's table: label, latency, how it was trained, ideal and each σ (percent)."""
    sigmas = [f"{s:g}" for s in wanted["sigmas"]]
    snr = _snr(wanted)
    width = max(len("label"), *(len(r["label"]) for r in records))
    head = f"{'label':<{width}}  {'lat ms':>8}  {'trained':>10}  {'ideal':>6}"
    print(f"{wanted['split']}, {records[0]['images']} images, {wanted['draws']} draws per σ > 0")
    print(head + "".join(f"  {noise_label(float(s), snr):>14}" for s in sigmas))
    for r in records:
        trained = "chip-aware" if r["trained_with_adc"] else "exact sums"
        line = f"{r['label']:<{width}}  {r['latency_ms']:>8.4f}  {trained:>10}  "
        line += f"{100 * r['ideal']:>6.2f}"
        for s in sigmas:
            mean, std = 100 * r[f"sigma_{s}_mean"], 100 * r[f"sigma_{s}_std"]
            line += f"  {mean:>6.2f} ± {std:<5.2f}"
        print(line)


def mapped_has_readout(model) -> bool:
    """Whether the saved network was trained through the read-out (its gains are stored)."""
    return any(name.endswith("readout") for name, _ in model.named_modules())
