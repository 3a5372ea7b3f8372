# SPDX-License-Identifier: Apache-2.0
"""The cut of val into `select` and `holdout`: the threshold sees only `select`, the reported
accuracy only `holdout`; the front places a cascade at that held-out accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from odimo.analysis.sweep import scan_cascades
from odimo.cascade.evaluation import CascadeOptions, evaluate_cascade
from odimo.cascade.holdout import split_val
from odimo.cascade.preds import preds_path, save_predictions, write_info
from odimo.errors import ConfigError
from odimo.tasks.cascade import parse_options

N, C = 400, 4


def _run(root: Path, name: str, logits: dict, labels: dict, energy: float) -> Path:
    run = root / name
    for split in ("val", "test"):
        save_predictions(preds_path(run, split), logits[split], labels[split])
    write_info(
        run, {"name": name, "dataset": "toy", "latency_ms": energy / 10, "energy_uj": energy}
    )
    return run


def _pair(root: Path, seed: int = 0) -> tuple[Path, Path, dict, dict]:
    """Two runs on a toy task: little right ~70 % of the time, big ~90 %."""
    rng = np.random.default_rng(seed)
    labels = {s: rng.integers(0, C, N) for s in ("val", "test")}
    logits = {}
    for name, skill in (("little", 1.5), ("big", 3.0)):
        logits[name] = {}
        for s in ("val", "test"):
            x = rng.normal(size=(N, C))
            x[np.arange(N), labels[s]] += skill
            logits[name][s] = x.astype(np.float32)
    little = _run(root, "little", logits["little"], labels, 1.0)
    big = _run(root, "big", logits["big"], labels, 10.0)
    return little, big, logits, labels


def _opts(little: Path, big: Path, **kw) -> CascadeOptions:
    base = dict(
        little=little,
        big=big,
        score="maxp",
        postcheck=False,
        threshold=None,
        choose="max_acc",
        epsilon=0.003,
        cost_metric="energy_uj",
        budget={"latency_ms": None, "energy_uj": None},
        thresholds=201,
        memory="none",
    )
    return CascadeOptions(**{**base, **kw})


def _maxp(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).max(axis=1)


def test_split_is_seeded_disjoint_and_sized() -> None:
    a, b = split_val(101, 0.3, 7), split_val(101, 0.3, 7)
    np.testing.assert_array_equal(a["holdout"], b["holdout"])
    assert len(a["holdout"]) == 30 and len(a["select"]) == 71
    assert sorted(np.concatenate([a["select"], a["holdout"]]).tolist()) == list(range(101))
    assert not np.array_equal(split_val(101, 0.3, 8)["holdout"], a["holdout"])
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError):
            split_val(10, bad, 0)
    with pytest.raises(ConfigError, match="empty"):
        split_val(3, 0.1, 0)


def test_threshold_ignores_the_holdout_and_its_accuracy_is_recomputed(tmp_path: Path) -> None:
    little, big, logits, labels = _pair(tmp_path)
    result, _, _ = evaluate_cascade(_opts(little, big))
    t = result["threshold"]
    held = split_val(N, 0.5, 0)["holdout"]
    # independent: max softmax of little below t -> big's class, else little's
    y = labels["val"][held]
    conf = _maxp(logits["little"]["val"][held])
    pred = np.where(
        conf < t, logits["big"]["val"][held].argmax(1), logits["little"]["val"][held].argmax(1)
    )
    assert result["val"]["acc_holdout"] == pytest.approx((pred == y).mean())
    assert result["val"]["holdout"]["n"] == len(held) == N // 2
    assert result["val"]["holdout"]["p_big"] == pytest.approx((conf < t).mean())
    assert result["val"]["holdout"]["energy_expected_uj"] == pytest.approx(
        1 + 10 * (conf < t).mean()
    )
    # scramble the held-out labels and big's held-out logits: the choice cannot move
    rng = np.random.default_rng(1)
    labels["val"][held] = rng.integers(0, C, len(held))
    logits["big"]["val"][held] = rng.normal(size=(len(held), C))
    _run(tmp_path, "little", logits["little"], labels, 1.0)
    _run(tmp_path, "big", logits["big"], labels, 10.0)
    again, _, _ = evaluate_cascade(_opts(little, big))
    assert again["threshold"] == t and again["threshold_source"] == "val_select:max_acc"
    assert again["val"]["acc_holdout"] != result["val"]["acc_holdout"]


def _write(path: Path, val: dict, test: dict) -> None:
    path.mkdir(parents=True)
    (path / "cascade.json").write_text(json.dumps({"label": path.name, "val": val, "test": test}))


def test_scan_places_a_cascade_at_its_holdout_accuracy(tmp_path: Path) -> None:
    holdout = {"acc": 0.81, "p_big": 0.4, "latency_expected_ms": 0.5, "energy_expected_uj": 5.0}
    val = {"acc": 0.9, "latency_expected_ms": 0.4, "energy_expected_uj": 4.0, "holdout": holdout}
    _write(tmp_path / "new", val, {"acc": 0.7, "acc_split": 0.83, "acc_no_memory": 0.6})
    _write(tmp_path / "old", {k: v for k, v in val.items() if k != "holdout"}, {"acc": 0.8})
    jobs = {Path(j["job_dir"]).name: j for j in scan_cascades(tmp_path)}
    new, old = jobs["new"], jobs["old"]
    assert new["kind"] == old["kind"] == "cascade"
    assert new["final/val/acc_hard"] == 0.81 and new["final/cost/energy_hard_uj"] == 5.0
    assert new["final/cost/latency_hard_ms"] == 0.5 and new["final/test/acc_hard"] == 0.83
    assert old["final/val/acc_hard"] == 0.9 and old["final/test/acc_hard"] == 0.8
    assert not new["missing"] and not old["missing"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("holdout_fraction=0", "strictly between 0 and 1"),
        ("holdout_fraction=1", "strictly between 0 and 1"),
        ("holdout_fraction=x", r"holdout_fraction must be a number in \[0.0, 1.0\]"),
        ("split_seed=0.5", "split_seed must be an integer"),
    ],
)
def test_task_refuses_a_bad_cut(tmp_path: Path, override: str, message: str) -> None:
    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("cascade", [f"little={tmp_path}", f"output_dir={tmp_path}", override])
    with pytest.raises(ConfigError, match=message):
        parse_options(cfg)
