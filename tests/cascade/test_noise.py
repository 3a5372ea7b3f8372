# SPDX-License-Identifier: Apache-2.0
"""A cascade judged under the analog read-out's noise: draw d of little routes with draw d of
big at the threshold chosen on the noiseless val; a network without a read-out is the same in
every draw; mismatched draws leave the cascade noiseless, said in a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from odimo.cascade.evaluation import evaluate_cascade
from odimo.cascade.holdout import split_val
from odimo.cascade.preds import (
    PredictionsError,
    load_run,
    noise_preds_path,
    preds_path,
    save_noisy_predictions,
    save_predictions,
    write_info,
)

from .test_holdout import N, _maxp, _opts

DRAWS = 3
NOISE = {"sigma_lsb": 1.0, "snr": 0.0, "draws": DRAWS}


def _net(root: Path, name: str, skill: float, energy: float, draws: int | None, seed: int):
    """A run with noiseless logits and, if `draws`, that many noisier draws of them (None: a
    network without an analog read-out)."""
    rng = np.random.default_rng(seed)
    labels = {s: np.random.default_rng(99).integers(0, 4, N) for s in ("val", "test")}
    noisy = {}
    for split in ("val", "test"):
        x = rng.normal(size=(N, 4))
        x[np.arange(N), labels[split]] += skill
        save_predictions(preds_path(root / name, split), x.astype(np.float32), labels[split])
        if draws:
            noisy[split] = (x + rng.normal(scale=1.5, size=(draws, N, 4))).astype(np.float32)
            save_noisy_predictions(
                noise_preds_path(root / name, split), noisy[split], labels[split]
            )
    info = {"name": name, "dataset": "toy", "latency_ms": energy / 10, "energy_uj": energy,
            "read_out": draws is not None}  # fmt: skip
    if draws:
        info["noise"] = {**NOISE, "draws": draws}
    write_info(root / name, info)
    return root / name, noisy, labels


def _by_hand(little: np.ndarray, big: np.ndarray, labels: np.ndarray, t: float):
    """Accuracy and share sent to big of maxp routing, one draw, no post-check."""
    to_big = _maxp(little) < t
    pred = np.where(to_big, big.argmax(1), little.argmax(1))
    return float((pred == labels).mean()), float(to_big.mean())


def test_noisy_cascade_equals_routing_each_draw_by_hand(tmp_path: Path) -> None:
    little, l_noisy, labels = _net(tmp_path, "little", 1.5, 1.0, DRAWS, 1)
    big, _, _ = _net(tmp_path, "big", 3.0, 10.0, None, 2)  # all-digital: no read-out
    result, _, _ = evaluate_cascade(_opts(little, big))
    assert result["noise"] == NOISE
    t = result["threshold"]
    big_test = load_run(big, "test")[0].logits
    runs = [_by_hand(l_noisy["test"][d], big_test, labels["test"], t) for d in range(DRAWS)]
    chip = result["test"]["chip"]
    assert chip["acc_mean"] == pytest.approx(np.mean([a for a, _ in runs]))
    assert chip["acc_std"] == pytest.approx(np.std([a for a, _ in runs], ddof=1))
    assert chip["p_big_mean"] == pytest.approx(np.mean([p for _, p in runs]))
    assert chip["energy_expected_uj"] == pytest.approx(1.0 + 10.0 * chip["p_big_mean"])
    assert chip["acc_big_mean"] == pytest.approx(
        float((big_test.argmax(1) == labels["test"]).mean())
    )
    assert chip["acc_mean"] != pytest.approx(result["test"]["acc"])  # the noise moves it
    held = split_val(N, 0.5, 0)["holdout"]
    big_val = load_run(big, "val")[0].logits
    hand = [_by_hand(l_noisy["val"][d][held], big_val[held], labels["val"][held], t)
            for d in range(DRAWS)]  # fmt: skip
    assert result["val"]["chip_holdout"]["acc_mean"] == pytest.approx(np.mean([a for a, _ in hand]))


def test_mismatched_draws_leave_the_cascade_noiseless(tmp_path: Path, caplog) -> None:
    little, _, _ = _net(tmp_path, "little", 1.5, 1.0, DRAWS, 1)
    big, _, _ = _net(tmp_path, "big", 3.0, 10.0, DRAWS + 1, 2)
    with caplog.at_level(logging.WARNING):
        result, _, _ = evaluate_cascade(_opts(little, big))
    assert result["noise"] is None and result["test"]["chip"] is None
    assert "do not share noise-draw predictions" in caplog.text
    noisy_only, _, _ = _net(tmp_path, "solo", 1.5, 1.0, DRAWS, 3)
    single, _, _ = evaluate_cascade(_opts(noisy_only, None))
    assert single["test"]["chip"]["p_big_mean"] == 0.0


def test_noise_draws_of_other_samples_are_refused(tmp_path: Path) -> None:
    little, _, labels = _net(tmp_path, "little", 1.5, 1.0, DRAWS, 1)
    wrong = np.zeros((DRAWS, N - 1, 4), dtype=np.float32)
    save_noisy_predictions(noise_preds_path(little, "test"), wrong, labels["test"][:-1])
    with pytest.raises(PredictionsError, match="expected logits"):
        load_run(little, "test")


def test_noise_draws_listed_but_missing_are_refused(tmp_path: Path) -> None:
    little, _, _ = _net(tmp_path, "little", 1.5, 1.0, DRAWS, 1)
    noise_preds_path(little, "val").unlink()
    with pytest.raises(PredictionsError, match="is missing although info.json lists noise"):
        load_run(little, "val")
