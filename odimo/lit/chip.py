# SPDX-License-Identifier: Apache-2.0
"""Accuracy of the deployed network on the chip: noiseless read-out and Monte-Carlo noise.

`chip_accuracy` evaluates a mapped (or split) network whose analog channels read out through
the ADC (`odimo.quant.adc`) over `draws` seeded noise draws: draw i uses seed `seed + i` in
every read-out (`set_readout_noise`), so a report is reproducible and the same draw hits every
form of the network. `on_platform` rebuilds a network trained with exact analog sums (an
"ideal" run, `platform.analog.adc=null`) on a platform with the read-out, calibrating the gains
on a batch of training images, so an ideal network can be judged on the chip's arithmetic.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from odimo.hw.analog import NoiseConfig
from odimo.hw.platform import Platform
from odimo.models.build import build_model
from odimo.models.io import readout_state
from odimo.nn.mapping import apply_mapping, model_mapping
from odimo.quant.adc import calibrate_readouts, readouts, set_readout_noise

#: Draws of the Monte-Carlo evaluation (`eval.noise_draws`).
NOISE_DRAWS = 5


@torch.no_grad()
def accuracy(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> float:
    """Top-1 accuracy of `model` (eval mode) over (x, y) batches."""
    model.eval()
    device = next(model.parameters()).device
    correct = total = 0
    for x, y in batches:
        pred = model(x.to(device)).argmax(1).cpu()
        correct += int((pred == y).sum())
        total += len(y)
    return correct / max(total, 1)


def _over_draws(model: nn.Module, batches, noise: NoiseConfig, draws: int, seed: int, fn) -> list:
    """fn(model, batches) in each of `draws` seeded noise draws (draw i: seed `seed + i` in every
    read-out); the network is noiseless again afterwards. ValueError without a read-out."""
    if not readouts(model):
        raise ValueError("the network has no analog read-out (platform.analog.adc is null)")
    batches = list(batches)
    out = []
    try:
        for i in range(draws):
            set_readout_noise(model, noise, seed=seed + i)
            out.append(fn(model, batches))
    finally:
        set_readout_noise(model, None)
    return out


def chip_accuracy(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    noise: NoiseConfig,
    draws: int = NOISE_DRAWS,
    seed: int = 0,
) -> dict[str, float | list[float]]:
    """Accuracy over `draws` seeded noise draws: mean, std (sample std, 0 for one draw), all.

    Raises ValueError if the network has no analog read-out (nothing to draw noise in).
    """
    accs = _over_draws(model, batches, noise, draws, seed, accuracy)
    return {**draw_summary(accs), "draws": accs}


def draw_summary(values: Iterable[float]) -> dict[str, float]:
    """Mean and sample std (0 for one value) of per-draw figures, as every chip report gives."""
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std}


@torch.no_grad()
def _logits(model: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> Tensor:
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(x.to(device)).float().flatten(1).cpu() for x, _ in batches])


def noisy_logits(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    noise: NoiseConfig,
    draws: int = NOISE_DRAWS,
    seed: int = 0,
) -> Tensor:
    """Logits [draws, N, C] (float32, CPU) of `draws` seeded noise draws, the draws of
    `chip_accuracy` (draw i: seed `seed + i`): their accuracies are its `draws`."""
    return torch.stack(_over_draws(model, batches, noise, draws, seed, _logits))


def on_platform(
    mapped_model: nn.Module, platform: Platform, calibration: Tensor | None = None
) -> nn.Module:
    """The mapped network rebuilt on `platform` (its read-out gains from the network's own
    checkpoint where it has them, else calibrated on `calibration` images)."""
    model = build_model(mapped_model.spec, "mapped", platform)
    apply_mapping(model, model_mapping(mapped_model, platform))
    model.load_state_dict(readout_state(mapped_model.state_dict(), model), strict=False)
    model = model.to(next(mapped_model.parameters()).device).eval()
    if calibration is not None and any(not r.calibrated for r in readouts(model)):
        device = next(model.parameters()).device
        calibrate_readouts(model, calibration.to(device), keep_calibrated=True)
    return model


def limited(loader: Iterable[tuple[Tensor, Tensor]], images: int | None):
    """The first `images` images of a loader's batches (all when None)."""
    seen = 0
    for x, y in loader:
        if images is not None and seen >= images:
            return
        take = len(y) if images is None else min(len(y), images - seen)
        seen += take
        yield x[:take], y[:take]


def chip_metrics(
    model: nn.Module,
    loaders: dict[str, Iterable[tuple[Tensor, Tensor]]],
    noise: NoiseConfig,
    draws: int = NOISE_DRAWS,
    seed: int = 0,
    images: int | None = None,
) -> dict[str, float]:
    """`final/<split>/acc_chip_mean` and `_std` over seeded draws for each split's loader
    (nothing when the network has no read-out or draws is 0)."""
    if draws < 1 or not readouts(model):
        return {}
    out: dict[str, float] = {}
    for split, loader in loaders.items():
        result = chip_accuracy(model, limited(loader, images), noise, draws, seed)
        out[f"final/{split}/acc_chip_mean"] = result["mean"]
        out[f"final/{split}/acc_chip_std"] = result["std"]
    out["final/chip/noise_sigma_lsb"] = noise.sigma_lsb
    out["final/chip/noise_snr"] = noise.snr
    out["final/chip/noise_draws"] = float(draws)
    return out


def sigma_table(
    model: nn.Module,
    batches: list[tuple[Tensor, Tensor]],
    noise: NoiseConfig,
    sigmas: Iterable[float],
    draws: int = NOISE_DRAWS,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Chip accuracy at each additive σ (LSB): σ = 0 is the noiseless ADC (one value), σ > 0
    mean ± std over `draws` seeded draws; `noise.snr` > 0 replaces σ by that relative mode."""
    rows = []
    for sigma in sigmas:
        level = NoiseConfig(float(sigma), noise.snr if sigma else 0.0)
        if level.silent:
            acc = accuracy(model, batches)
            rows.append({"sigma_lsb": float(sigma), "mean": acc, "std": 0.0, "draws": 0})
            continue
        res = chip_accuracy(model, batches, level, draws, seed)
        rows.append({"sigma_lsb": float(sigma), "mean": res["mean"], "std": res["std"],
                     "draws": draws})  # fmt: skip
    return rows
