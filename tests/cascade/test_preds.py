# SPDX-License-Identifier: Apache-2.0
"""Prediction files: round trip, corrupt files and mismatched pairs give one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from odimo.cascade.preds import (
    Predictions,
    PredictionsError,
    check_pair,
    info_cost,
    load_predictions,
    read_info,
    save_predictions,
    write_info,
)


def _preds(n: int = 6, c: int = 3, split: str = "val", shift: int = 0) -> Predictions:
    rng = np.random.default_rng(0)
    return Predictions(rng.normal(size=(n, c)), (np.arange(n) + shift) % c, split, "x")


def test_round_trip(tmp_path: Path) -> None:
    logits = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    labels = np.array([0, 3, 2, 1, 0])
    path = save_predictions(tmp_path / "preds" / "preds_val.npz", logits, labels)
    p = load_predictions(path, "val")
    np.testing.assert_array_equal(p.logits, logits)
    np.testing.assert_array_equal(p.labels, labels)
    assert p.acc == pytest.approx(np.mean(logits.argmax(1) == labels))
    assert not list(path.parent.glob("*.tmp"))


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(PredictionsError, match="tasks/predict.py"):
        load_predictions(tmp_path / "preds" / "preds_val.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(PredictionsError, match="not a predictions file"):
        load_predictions(bad)
    np.savez(tmp_path / "shape.npz", logits=np.zeros((3, 2)), labels=np.zeros(4, np.int64))
    with pytest.raises(PredictionsError, match="expected logits"):
        load_predictions(tmp_path / "shape.npz")
    np.savez(tmp_path / "range.npz", logits=np.zeros((3, 2)), labels=np.array([0, 1, 2]))
    with pytest.raises(PredictionsError, match="labels outside"):
        load_predictions(tmp_path / "range.npz")
    np.savez(tmp_path / "nan.npz", logits=np.full((1, 2), np.nan), labels=np.array([0]))
    with pytest.raises(PredictionsError, match="NaN"):
        load_predictions(tmp_path / "nan.npz")


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (_preds(split="test"), "different splits"),
        (_preds(n=7), "different lengths"),
        (_preds(c=4), "different class counts"),
        (_preds(shift=1), "labels differ"),
    ],
)
def test_mismatched_pairs(other: Predictions, message: str) -> None:
    check_pair(_preds(), _preds())
    with pytest.raises(PredictionsError, match=message):
        check_pair(_preds(), other)


def test_info_round_trip_and_costs(tmp_path: Path) -> None:
    with pytest.raises(PredictionsError, match="no predictions"):
        read_info(tmp_path)
    write_info(tmp_path, {"name": "a", "latency_ms": 0.5, "energy_uj": None})
    info = read_info(tmp_path)
    cost = info_cost(info)
    assert info["name"] == "a" and cost.latency_ms == 0.5 and np.isnan(cost.energy_uj)
    (tmp_path / "preds" / "info.json").write_text("{")
    with pytest.raises(PredictionsError, match="not readable"):
        read_info(tmp_path)
