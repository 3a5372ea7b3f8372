# SPDX-License-Identifier: Apache-2.0
"""Chip evaluation task: a finished run's deployed network on DIANA's analog read-out.

Loads `<run_dir>/final/model.pt`, rebuilds it on `platform` (whose analog core reads out
through an ADC; a network trained with exact sums gets its gains from a calibration batch of
training images), and reports the ideal accuracy (exact sums) and the chip accuracy at each
σ of `sigmas` (mean ± std over `draws` seeded draws) on the first `images` images of `split`.
Writes `<run_dir>/chip_eval.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from odimo.errors import ConfigError
from odimo.export.run import load_run_config
from odimo.hw import get_platform, with_analog
from odimo.io import atomic_write_text
from odimo.lit.chip import accuracy, limited, on_platform, sigma_table
from odimo.models import load_mapped


def run(cfg: DictConfig) -> dict:
    """Evaluate `cfg.run_dir` under the chip arithmetic; print a table, write chip_eval.json."""
    if cfg.get("run_dir") in (None, ""):
        raise ConfigError("run_dir is required: python tasks/chip_eval.py run_dir=<finished run>")
    run_dir = Path(str(cfg.run_dir))
    if cfg.get("threads") is not None:
        torch.set_num_threads(int(cfg.threads))
    chip = get_platform(cfg.platform)
    if chip.analog is None or not chip.analog.enabled:
        raise ConfigError(f"platform {chip.name!r} has no analog read-out (platform.analog.adc)")
    mapped, _, _ = load_mapped(run_dir / "final" / "model.pt")
    run_cfg = load_run_config(run_dir)
    datamodule = instantiate(run_cfg.dataset.datamodule)
    datamodule.setup("fit")
    datamodule.setup("test")
    loader = {"val": datamodule.val_dataloader, "test": datamodule.test_dataloader}
    if str(cfg.split) not in loader:
        raise ConfigError(f"split must be val or test, got {cfg.split!r}")
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
    }
    print(f"{run_dir}: {result['split']} ({result['images']} images), ideal "
          f"{100 * result['ideal_acc']:.2f} %")  # fmt: skip
    for row in rows:
        print(f"  σ = {row['sigma_lsb']:g} LSB: {100 * row['mean']:.2f} ± "
              f"{100 * row['std']:.2f} % ({row['draws']} draws)")  # fmt: skip
    atomic_write_text(run_dir / "chip_eval.json", json.dumps(result, indent=1) + "\n")
    return result


def mapped_has_readout(model) -> bool:
    """Whether the saved network was trained through the read-out (its gains are stored)."""
    return any(name.endswith("readout") for name, _ in model.named_modules())
