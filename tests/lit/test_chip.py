# SPDX-License-Identifier: Apache-2.0
"""Chip accuracy: seeded Monte-Carlo draws, the σ table, rebuilding an ideal network."""

from __future__ import annotations

import copy
import statistics

import pytest
import torch

from odimo.hw import get_platform, with_analog
from odimo.hw.analog import NoiseConfig
from odimo.lit import FinetuneModule
from odimo.lit.chip import accuracy, chip_accuracy, on_platform, sigma_table
from odimo.quant.adc import calibrate_readouts, readouts, set_readout_noise
from tests.export import chip_mapped, inputs, random_mapped


def _batches(n: int = 24):
    x = inputs("res20", n, seed=4)
    with torch.no_grad():
        y = chip_mapped("res20", "analog")(x).argmax(1)  # labels the noiseless chip gets right
    return [(x[:12], y[:12]), (x[12:], y[12:])]


def test_chip_accuracy_is_the_mean_and_std_of_seeded_draws() -> None:
    model = chip_mapped("res20", "analog")
    batches = _batches()
    noise = NoiseConfig(sigma_lsb=8.0)
    res = chip_accuracy(model, batches, noise, draws=3, seed=5)
    manual = []
    for i in range(3):
        set_readout_noise(model, noise, seed=5 + i)
        manual.append(accuracy(model, batches))
    set_readout_noise(model, None)
    assert res["draws"] == manual
    assert res["mean"] == pytest.approx(statistics.fmean(manual))
    assert res["std"] == pytest.approx(statistics.stdev(manual))
    assert res["mean"] < 1.0  # σ = 8 LSB flips some of the noiseless chip's predictions
    assert accuracy(model, batches) == 1.0  # and the model is noiseless again afterwards


def test_sigma_table_zero_is_the_noiseless_adc() -> None:
    model = chip_mapped("res20", "analog")
    rows = sigma_table(model, _batches(), NoiseConfig(), [0, 1], draws=2)
    assert rows[0] == {"sigma_lsb": 0.0, "mean": 1.0, "std": 0.0, "draws": 0}
    assert rows[1]["draws"] == 2 and rows[1]["mean"] <= 1.0


def test_an_ideal_network_rebuilt_on_the_chip_reads_out() -> None:
    ideal, _ = random_mapped("res20", "analog")
    chip = get_platform("diana")
    x = inputs("res20", 8)
    model = on_platform(ideal, chip, calibration=x)
    assert readouts(model) and all(r.calibrated for r in readouts(model))
    back = on_platform(model, with_analog(chip, None))
    with torch.no_grad():
        assert torch.equal(back(x), ideal(x))  # same weights: exact sums give the ideal logits
        assert not torch.equal(model(x), ideal(x))
    with pytest.raises(ValueError, match="no analog read-out"):
        chip_accuracy(ideal, [(x, torch.zeros(8, dtype=torch.long))], NoiseConfig())


def test_rebuilding_keeps_the_trained_gains_and_calibrates_only_missing_ones() -> None:
    model = chip_mapped("res20", "random")
    before = [float(r.log2_gain) for r in readouts(model)]
    readouts(model)[0].reset()  # e.g. a layer whose analog unit never ran
    x = inputs("res20", 8, seed=7) * 0.5  # another batch: fresh calibration would differ
    rebuilt = on_platform(model, get_platform("diana"), calibration=x)
    after = [float(r.log2_gain) for r in readouts(rebuilt)]
    assert after[1:] == before[1:] and after[0] >= 0


def _gains(model: torch.nn.Module) -> list[float]:
    return [float(r.log2_gain) for r in readouts(model)]


@pytest.mark.parametrize("every", [0, 2])
def test_training_refits_the_gains_every_n_batches(every: int) -> None:
    """`train.recalibrate_every`: from the phase's first batch on, every n-th training forward
    re-fits the gains from its own partial sums (those a calibration on that batch gives), and
    they follow the sums: images 4x darker give 4x smaller sums, a narrower first-layer gain."""
    model = chip_mapped("res20", "analog").train()
    before = _gains(model)
    module = FinetuneModule(model, 10, {})
    module.recalibrate_every = every
    dark, other = inputs("res20", 8, seed=3) / 4, inputs("res20", 8, seed=5)
    expected = {"dark": copy.deepcopy(model), "other": copy.deepcopy(model)}
    calibrate_readouts(expected["dark"], dark)
    calibrate_readouts(expected["other"], other)
    assert _gains(expected["dark"])[0] <= before[0] - 1  # the first layer's sums shrank 4x
    assert _gains(expected["other"]) != _gains(expected["dark"])
    seen = []
    for i, x in enumerate([dark, other, other]):
        module.on_train_batch_start((x, None), i)
        model(x)
        seen.append(_gains(model))
    if every == 0:
        assert seen == [before] * 3
    else:  # batch 0 re-fits, batch 1 keeps, batch 2 re-fits
        assert seen == [_gains(expected["dark"])] * 2 + [_gains(expected["other"])]


def test_selection_under_noise_validates_one_seeded_draw_beside_the_noiseless_read_out() -> None:
    """`select_under`: validation logs `val/acc_hard` noiseless and `val/acc_chip` under one
    seeded draw of the deployment noise (the draw of `set_readout_noise(..., seed)`, the same
    every epoch), which becomes the monitor; the network is noiseless again afterwards."""
    import lightning.pytorch as L

    from odimo.pipeline.phases import SELECT_SEED

    model = chip_mapped("res20", "analog")
    batches = _batches(48)
    noise = NoiseConfig(sigma_lsb=16.0)
    set_readout_noise(model, noise, seed=SELECT_SEED)
    expected = accuracy(model, batches)
    set_readout_noise(model, noise, seed=SELECT_SEED + 1)
    other = accuracy(model, batches)
    set_readout_noise(model, None)
    assert expected < 1.0 and other != expected  # draws flip predictions, each draw others
    module = FinetuneModule(model, 5, {})
    assert module.monitor == "val/acc_hard"
    module.select_under(noise, SELECT_SEED)
    assert module.monitor == "val/acc_chip" and FinetuneModule.monitor == "val/acc_hard"
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None)  # the two batches as they are
    epochs = [trainer.validate(module, loader, verbose=False)[0] for _ in range(2)]
    assert epochs[0]["val/acc_hard"] == 1.0  # the labels are the noiseless chip's predictions
    assert epochs[0]["val/acc_chip"] == pytest.approx(expected)
    assert epochs[1]["val/acc_chip"] == epochs[0]["val/acc_chip"]  # the same draw every epoch
    assert all(r.noise is None and r.generator is None for r in readouts(model))
    module.select_under(NoiseConfig(sigma_lsb=0.0))  # noiseless deployment: noiseless choice
    assert module.monitor == "val/acc_hard" and module.select_noise is None
