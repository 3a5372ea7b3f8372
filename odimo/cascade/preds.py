# SPDX-License-Identifier: Apache-2.0
"""Cached predictions, the interface between a trained network and every cascade analysis.

`<dir>/preds/preds_<split>.npz` holds `logits` [N, C] float32 and `labels` [N] int64 of one split
in split order; `<dir>/preds/info.json` says where they come from, the dataset, the class count
and the network's cost per inference (DIANA latency in ms, energy in µJ; null when unknown).
A network that reads out through the analog ADC may also have `preds_<split>_noise.npz`:
`logits` [D, N, C] of D seeded read-out noise draws (`tasks/predict.py noise_draws=D`; the
draws and the noise are in info.json's `noise`), the chip's outputs under noise.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from odimo.cascade.expected_cost import NetCost
from odimo.errors import OdimoError
from odimo.io import atomic_path, atomic_write_text

SPLITS = ("val", "test")
PREDS_DIR = "preds"
INFO_FORMAT = "odimo.preds/1"


class PredictionsError(OdimoError):
    """Missing, corrupt or mismatched prediction files."""


@dataclass(frozen=True)
class Predictions:
    """One network's logits on one split, with the labels."""

    logits: np.ndarray
    labels: np.ndarray
    split: str
    source: str = ""
    #: logits [D, N, C] of D seeded read-out noise draws (None: noiseless predictions only)
    noisy: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])

    @property
    def pred(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.labels

    @property
    def acc(self) -> float:
        return float(self.correct.mean())

    def __len__(self) -> int:
        return len(self.labels)


def preds_path(run_dir: str | Path, split: str) -> Path:
    """Where a run's predictions of `split` live."""
    return Path(run_dir) / PREDS_DIR / f"preds_{split}.npz"


def noise_preds_path(run_dir: str | Path, split: str) -> Path:
    """Where a run's predictions of `split` under read-out noise draws live."""
    return Path(run_dir) / PREDS_DIR / f"preds_{split}_noise.npz"


def save_predictions(path: str | Path, logits: np.ndarray, labels: np.ndarray) -> Path:
    """Write logits (float32) and labels (int64) as an .npz."""
    path = Path(path)
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)

    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, logits=logits, labels=labels)
    return path


def save_noisy_predictions(path: str | Path, logits: np.ndarray, labels: np.ndarray) -> Path:
    """Write the logits [D, N, C] of D noise draws (float32) and the labels [N] as an .npz."""
    if np.asarray(logits).ndim != 3:
        raise PredictionsError(f"noise-draw logits must be [D, N, C], got {np.shape(logits)}")
    return save_predictions(path, logits, labels)


def load_noisy(path: str | Path, plain: Predictions) -> np.ndarray | None:
    """The noise draws' logits [D, N, C] of `plain`'s split (None when the file is absent);
    PredictionsError when they do not belong to the same samples and classes."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            logits, labels = data["logits"], data["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise PredictionsError(f"{path} is not a noise-draw predictions file ({err})") from None
    shape = (len(plain), plain.num_classes)
    if logits.ndim != 3 or logits.shape[1:] != shape or len(logits) == 0:
        raise PredictionsError(
            f"{path}: expected logits [D, {shape[0]}, {shape[1]}], got {logits.shape}"
        )
    if not np.array_equal(labels, plain.labels) or not np.isfinite(logits).all():
        raise PredictionsError(
            f"{path}: labels differ from {plain.source} or logits hold NaN/inf: "
            f"run python tasks/predict.py run_dir={path.parent.parent} again"
        )
    return logits.astype(np.float64)


def load_predictions(path: str | Path, split: str = "") -> Predictions:
    """Read and check one .npz; PredictionsError with what to do when it is wrong."""
    path = Path(path)
    if not path.is_file():
        raise PredictionsError(
            f"{path} does not exist: run python tasks/predict.py run_dir={path.parent.parent}"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            logits, labels = data["logits"], data["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise PredictionsError(
            f"{path} is not a predictions file with logits and labels ({err})"
        ) from None
    if logits.ndim != 2 or labels.ndim != 1 or len(logits) != len(labels) or len(labels) == 0:
        raise PredictionsError(
            f"{path}: expected logits [N, C] and labels [N], got {logits.shape} and {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise PredictionsError(f"{path}: labels must be integers, got {labels.dtype}")
    if not np.isfinite(logits).all():
        raise PredictionsError(f"{path}: logits hold NaN or inf")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise PredictionsError(f"{path}: labels outside 0..{logits.shape[1] - 1}")
    return Predictions(logits.astype(np.float64), labels.astype(np.int64), split, str(path))


def check_pair(little: Predictions, big: Predictions) -> None:
    """Both networks must have predicted the same samples of the same split, in the same order."""
    where = f"{little.source} vs {big.source}"
    if little.split != big.split:
        raise PredictionsError(f"predictions of different splits ({little.split}, {big.split})")
    if len(little) != len(big):
        raise PredictionsError(f"different lengths {len(little)} and {len(big)}: {where}")
    if little.num_classes != big.num_classes:
        raise PredictionsError(
            f"different class counts {little.num_classes} and {big.num_classes}: {where}"
        )
    if not np.array_equal(little.labels, big.labels):
        bad = int((little.labels != big.labels).sum())
        raise PredictionsError(
            f"labels differ on {bad} samples ({where}): the two runs saw different data; "
            "predict both on the same dataset and split"
        )


def write_info(run_dir: str | Path, info: dict[str, Any]) -> Path:
    """Write `<run_dir>/preds/info.json` (format tag added)."""
    path = Path(run_dir) / PREDS_DIR / "info.json"
    text = json.dumps({"format": INFO_FORMAT, **info}, indent=1, allow_nan=False) + "\n"
    atomic_write_text(path, text)
    return path


def read_info(run_dir: str | Path) -> dict[str, Any]:
    """Read `<run_dir>/preds/info.json`; PredictionsError when absent or corrupt."""
    path = Path(run_dir) / PREDS_DIR / "info.json"
    if not path.is_file():
        raise PredictionsError(
            f"{Path(run_dir)} has no predictions: run python tasks/predict.py run_dir={run_dir}"
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PredictionsError(f"{path} is not readable JSON ({err})") from None
    if not isinstance(info, dict) or info.get("format") != INFO_FORMAT:
        raise PredictionsError(f"{path} is not an {INFO_FORMAT} file")
    return info


def info_cost(info: dict[str, Any]) -> NetCost:
    """The network's cost per inference from its info (NaN where unknown)."""

    def number(key: str) -> float:
        value = info.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok and math.isfinite(value) else math.nan

    return NetCost(number("latency_ms"), number("energy_uj"))


def load_run(run_dir: str | Path, split: str) -> tuple[Predictions, dict[str, Any]]:
    """A run's predictions of one split and its info."""
    info = read_info(run_dir)
    plain = load_predictions(preds_path(run_dir, split), split)
    noisy = None
    if info.get("noise"):
        path = noise_preds_path(run_dir, split)
        noisy = load_noisy(path, plain)
        if noisy is None:
            raise PredictionsError(
                f"{path} is missing although info.json lists noise draws: run python "
                f"tasks/predict.py run_dir={run_dir} again"
            )
    return replace(plain, noisy=noisy), info
