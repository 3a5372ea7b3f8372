# SPDX-License-Identifier: Apache-2.0
"""The pool ranking on synthetic prediction folders whose best pair and threshold are known by
construction; mixed platforms refused; ε respected; the little-network selection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from odimo.cascade.evaluation import CascadeOptions, evaluate_cascade
from odimo.cascade.holdout import split_val
from odimo.cascade.pool import RankOptions, best_per_score, load_pool, rank_pool
from odimo.cascade.preds import preds_path, save_predictions, write_info
from odimo.characterization.little import little_commands, select_little
from odimo.errors import ConfigError

N, C = 600, 10
DIANA = {"name": "diana", "fingerprint": "d1"}


def logits_for(labels: np.ndarray, right: np.ndarray, maxp: np.ndarray) -> np.ndarray:
    """Logits whose argmax is the label where `right` (else the next class), with the given
    max probability: one logit a, the others 0, e^a / (e^a + C - 1) = maxp."""
    top = np.where(right, labels, (labels + 1) % C)
    a = np.log(maxp * (C - 1) / (1 - maxp))
    out = np.zeros((len(labels), C))
    out[np.arange(len(labels)), top] = a
    return out


def fake_net(
    root: Path,
    name: str,
    energy: float,
    wrong: dict[str, np.ndarray],
    sure_wrong: dict[str, np.ndarray] | None = None,
    platform: dict | None = None,
) -> Path:
    """A predictions folder: right and sure (maxp 0.9) except on `wrong` (maxp 0.3) and on
    `sure_wrong` (wrong at maxp 0.95: no threshold can single those out)."""
    folder = root / name
    for split, labels in LABELS.items():
        bad = wrong[split]
        sure_bad = np.zeros(len(labels), bool) if sure_wrong is None else sure_wrong[split]
        maxp = np.where(bad, 0.3, np.where(sure_bad, 0.95, 0.9))
        logits = logits_for(labels, ~(bad | sure_bad), maxp)
        save_predictions(preds_path(folder, split), logits, labels)
    write_info(
        folder,
        {
            "source": "synthetic",
            "name": name,
            "dataset": "synthetic",
            "num_classes": C,
            "latency_ms": energy / 10,
            "energy_uj": energy,
            "platform": DIANA if platform is None else platform,
        },
    )
    return folder


RNG = np.random.default_rng(0)
LABELS = {s: RNG.integers(0, C, N) for s in ("val", "test")}
NONE = {s: np.zeros(N, bool) for s in LABELS}


def share(p: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s: rng.random(N) < p for s in LABELS}


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pool")
    fake_net(root, "big", 10.0, NONE)  # always right
    fake_net(root, "good", 1.0, share(0.2, 1))  # unsure exactly where it is wrong
    fake_net(root, "blind", 0.5, NONE, sure_wrong=share(0.3, 2))  # sure even when wrong
    return root


def _members(pool_dir: Path, **kw):
    return load_pool([pool_dir / n for n in ("big", "good", "blind")], **kw)


def test_the_right_pair_and_threshold_win(pool_dir: Path) -> None:
    rows = rank_pool(_members(pool_dir), RankOptions())
    # every score separates good's unsure inputs alike: the three rows of (good, big) lead
    assert {(r["little"], r["big"], r["meets"]) for r in rows[:3]} == {("good", "big", True)}
    top = next(r for r in rows[:3] if r["score"] == "maxp")
    # routing exactly good's unsure (wrong, maxp 0.3) inputs, at the lowest such grid threshold
    assert 0.3 - 1e-9 < top["threshold"] <= 0.3 + 1 / 2000 + 1e-9
    wrong = share(0.2, 1)
    held = split_val(N, 0.5, 0)["holdout"]
    p_held = wrong["val"][held].mean()
    assert top["p_big_holdout"] == pytest.approx(p_held)
    assert top["acc_holdout"] == 1.0 and top["acc_test"] == 1.0
    assert top["energy_expected_uj_holdout"] == pytest.approx(1.0 + 10.0 * p_held)
    assert top["saving"] == pytest.approx(1 - (1.0 + 10.0 * p_held) / 10.0)
    assert top["p_big_test"] == pytest.approx(wrong["test"].mean())
    # blind can only match big by sending it (nearly) everything: it saves nothing
    blind = [r for r in rows if r["little"] == "blind" and r["big"] == "big"]
    assert blind and all(r["saving"] < 0 for r in blind)
    assert all(r["rank"] > top["rank"] for r in blind)
    # judged where the threshold was chosen instead: the same pair, its select-part saving
    on_select = rank_pool(_members(pool_dir), RankOptions(rank_on="select"))[0]
    p_select = wrong["val"][split_val(N, 0.5, 0)["select"]].mean()
    assert on_select["saving"] == pytest.approx(1 - (1.0 + 10.0 * p_select) / 10.0)
    # a pair is only formed with cost(little) < cost(big)
    assert not [r for r in rows if r["big"] == "blind"]


def test_pool_agrees_with_the_cascade_task(pool_dir: Path, tmp_path: Path) -> None:
    """The same pair through tasks/cascade.py's evaluation (choose=near_big): same threshold,
    same held-out and test points."""
    top = best_per_score(rank_pool(_members(pool_dir), RankOptions()))["margin"]
    opts = CascadeOptions(
        little=pool_dir / "good",
        big=pool_dir / "big",
        score="margin",
        postcheck=False,
        threshold=None,
        choose="near_big",
        epsilon=0.003,
        cost_metric="energy_uj",
        budget={"latency_ms": None, "energy_uj": None},
        thresholds=2001,
        memory="none",
        out_dir=tmp_path,
    )
    result, _, _ = evaluate_cascade(opts)
    assert result["threshold"] == top["threshold"]
    assert result["val"]["holdout"]["p_big"] == pytest.approx(top["p_big_holdout"])
    assert result["test"]["acc"] == pytest.approx(top["acc_test"])
    assert result["test"]["energy_expected_uj"] == pytest.approx(top["energy_expected_uj_test"])


def test_epsilon_is_respected(tmp_path: Path) -> None:
    """A little network confidently wrong on ~1 % of inputs: within 0.3 pt of big it must send
    (almost) everything to big; allowed 3 pt, it stops at its unsure 20 %."""
    fake_net(tmp_path, "big", 10.0, NONE)
    fake_net(tmp_path, "little", 1.0, share(0.2, 3), sure_wrong=share(0.01, 4))
    members = load_pool([tmp_path / "big", tmp_path / "little"])
    strict = rank_pool(members, RankOptions(scores=("maxp",), epsilon=0.003))[0]
    loose = rank_pool(members, RankOptions(scores=("maxp",), epsilon=0.03))[0]
    for row, eps in ((strict, 0.003), (loose, 0.03)):
        assert row["acc_select"] >= row["acc_big_select"] - eps - 1e-12
        assert row["meets"] == (row["acc_holdout"] >= row["acc_big_holdout"] - eps - 1e-12)
    assert strict["p_big_select"] > 0.95  # only the confidently wrong 1 % stay with little
    assert strict["threshold"] > 0.9
    held = split_val(N, 0.5, 0)["select"]
    assert loose["p_big_select"] == pytest.approx(share(0.2, 3)["val"][held].mean())
    assert loose["saving"] > 0.6 > strict["saving"]


def test_a_costlier_but_less_accurate_network_is_no_big(tmp_path: Path) -> None:
    fake_net(tmp_path, "cheap", 1.0, share(0.1, 5))
    fake_net(tmp_path, "dear", 10.0, share(0.3, 6))  # 10x the cost, less accurate
    assert rank_pool(load_pool([tmp_path / "cheap", tmp_path / "dear"]), RankOptions()) == []


def test_mixed_platforms_are_refused(tmp_path: Path) -> None:
    fake_net(tmp_path, "big", 10.0, NONE)
    fake_net(tmp_path, "other", 1.0, share(0.2, 1), platform={"name": "toy3", "fingerprint": "t"})
    with pytest.raises(ConfigError, match="mixes 2 cost platforms.*mix_platforms=true"):
        load_pool([tmp_path / "big", tmp_path / "other"])
    members = load_pool([tmp_path / "big", tmp_path / "other"], mix_platforms=True)
    assert {m.platform for m in members} == {"diana@d1", "toy3@t"}


def test_little_selection() -> None:
    """Only rows ≥ ratio× cheaper than big and within `span` decades below that cap; of those
    the front of (cost ↓, quality ↑); the train.py multirun per space and law."""
    rows = [
        {"key": "probe/s1/1", "uj": 0.05, "macs": 9e6},  # below the span: too cheap to be useful
        {"key": "probe/s1/2", "uj": 0.2, "macs": 1e6},
        {"key": "probe/s1/3", "uj": 0.3, "macs": 0.5e6},  # dominated by s1/2
        {"key": "probe/s2/4", "uj": 0.6, "macs": 3e6},
        {"key": "resnet/s1/5", "uj": 0.9, "macs": 5e6},
        {"key": "resnet/s1/6", "uj": 1.5, "macs": 9e7},  # above the cap (10 / 10 = 1)
        {"key": "probe/s1/7", "uj": math.nan, "macs": 9e7},  # not costed
    ]
    kw = dict(cost_column="uj", quality_column="macs", name_column="key", big_cost=10.0)
    chosen = select_little(rows, **kw, ratio=10, span=1, k=4)
    assert [c["name"] for c in chosen] == ["probe/s1/2", "probe/s2/4", "resnet/s1/5"]
    assert chosen[0]["share_of_big"] == pytest.approx(0.02)
    assert [c["name"] for c in select_little(rows, **kw, k=1)] == ["probe/s2/4"]
    commands = little_commands(chosen, ["baseline=min_latency"])
    assert commands == [
        "python train.py -m model=sampled model.space=probe model.law=s1 model.id=2 "
        "baseline=min_latency",
        "python train.py -m model=sampled model.space=probe model.law=s2 model.id=4 "
        "baseline=min_latency",
        "python train.py -m model=sampled model.space=resnet model.law=s1 model.id=5 "
        "baseline=min_latency",
    ]
    with pytest.raises(ConfigError, match="sampled-network keys"):
        little_commands([{"name": "res20"}], [])
