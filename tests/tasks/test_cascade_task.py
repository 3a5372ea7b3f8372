# SPDX-License-Identifier: Apache-2.0
"""Predict, cascade and complementarity tasks end to end on two real tiny digits runs."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from odimo.cascade.holdout import split_val
from odimo.cascade.memory import image_keys, make_stream, run_memory, stream_images
from odimo.cascade.predict import split_loader
from odimo.cascade.preds import load_predictions, preds_path
from odimo.cascade.routing import at_threshold, pair_outputs, sweep_naive, threshold_grid
from odimo.models import load_mapped
from odimo.tasks import cascade as cascade_task
from odimo.tasks import complementarity as complementarity_task
from odimo.tasks import pareto as pareto_task
from odimo.tasks import predict as predict_task
from odimo.tasks import train as train_task
from tests.tasks.helpers import CONF, REPO, train_cfg

BASELINES = ("all_digital", "all_analog")


def _compose(name: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep dir with two finished digits baselines (one shared warm-up), both predicted."""
    root = tmp_path_factory.mktemp("cascade")
    for name in BASELINES:
        cfg = train_cfg(
            root,
            "phases=[warmup,baseline]",
            f"baseline={name}",
            "callbacks.plots=false",
            run=f"sweep/{name}",
        )
        train_task.run(cfg)
        predict_task.run(_compose("predict", f"run_dir={root / 'sweep' / name}"))
    return root / "sweep"


def _pair(sweep: Path, split: str):
    little = load_predictions(preds_path(sweep / "all_analog", split), split)
    big = load_predictions(preds_path(sweep / "all_digital", split), split)
    return little, big


def test_predictions_are_the_deployed_network_in_split_order(sweep: Path) -> None:
    for name in BASELINES:
        run = sweep / name
        metrics = json.loads((run / "metrics.json").read_text())
        cfg = OmegaConf.load(run / "config.yaml")
        model, _, _ = load_mapped(run / "final" / "model.pt")
        model.eval()
        datamodule = instantiate(cfg.dataset.datamodule)
        for split in ("val", "test"):
            preds = load_predictions(preds_path(run, split), split)
            assert preds.acc == pytest.approx(metrics[f"final/{split}/acc_hard"], abs=1e-6)
            x, y = zip(*split_loader(datamodule, split), strict=True)
            x, y = torch.cat(x), torch.cat(y)
            np.testing.assert_array_equal(preds.labels, y.numpy())
            with torch.no_grad():
                np.testing.assert_allclose(preds.logits[:50], model(x[:50]).numpy(), atol=1e-5)
        info = json.loads((run / "preds" / "info.json").read_text())
        assert info["energy_uj"] == metrics["final/cost/energy_hard_uj"]
        assert info["name"] == name


def test_cascade_picks_on_val_and_reports_on_test(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cascade_task.run(
        _compose(
            "cascade",
            f"little={sweep / 'all_analog'}",
            f"big={sweep / 'all_digital'}",
            "score=margin",
            "postcheck=true",
            f"output_dir={out}",
        )
    )
    t = result["threshold"]
    # the choice: the naive loop's most accurate threshold on val's select part, ties toward
    # fewer big calls; its accuracy reported on the held-out part
    little, big = _pair(sweep, "val")
    part = split_val(len(little), 0.5, 0)
    grid = threshold_grid(2001)
    acc, p_big = sweep_naive(
        pair_outputs(
            little.logits[part["select"]],
            big.logits[part["select"]],
            little.labels[part["select"]],
            "margin",
            True,
        ),
        grid,
    )
    best = acc.max()
    expect = grid[np.flatnonzero(acc == best)[np.argmin(p_big[acc == best])]]
    assert t == pytest.approx(expect)
    assert result["val"]["select"]["acc"] == pytest.approx(best)
    held = pair_outputs(
        little.logits[part["holdout"]],
        big.logits[part["holdout"]],
        little.labels[part["holdout"]],
        "margin",
        True,
    )
    assert result["val"]["acc_holdout"] == pytest.approx(at_threshold(held, t)[0])
    little, big = _pair(sweep, "test")
    outputs = pair_outputs(little.logits, big.logits, little.labels, "margin", True)
    test_acc, test_p = at_threshold(outputs, t)
    tr = result["test"]
    assert (tr["acc"], tr["p_big"]) == (pytest.approx(test_acc), pytest.approx(test_p))
    assert tr["acc_little"] == pytest.approx(little.acc) and tr["acc_big"] == pytest.approx(big.acc)
    assert tr["acc_oracle"] >= max(little.acc, big.acc)
    c_l, c_b = result["little"]["energy_uj"], result["big"]["energy_uj"]
    assert tr["energy_expected_uj"] == pytest.approx(c_l + test_p * c_b)
    assert tr["energy_worst_uj"] == pytest.approx(c_l + c_b)
    saved = json.loads((out / "cascade.json").read_text())
    assert saved["score"] == "margin" and saved["postcheck"] is True and saved["threshold"] == t
    with (out / "cascade_curve.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2001 and float(rows[-1]["threshold"]) == 1.0
    assert (out / "cascade_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_exact_memory_on_the_test_stream(sweep: Path, tmp_path: Path) -> None:
    result = cascade_task.run(
        _compose(
            "cascade",
            f"little={sweep / 'all_analog'}",
            f"big={sweep / 'all_digital'}",
            "score=maxp",
            "memory=exact",
            "threshold=0.6",
            "memory_stream.duplicates=0.5",
            f"output_dir={tmp_path}",
        )
    )
    mem = result["test"]["memory"]
    # independent count: stream items whose exact bytes were seen before
    run = sweep / "all_analog"
    datamodule = instantiate(OmegaConf.load(run / "config.yaml").dataset.datamodule)
    x = torch.cat([b[0] for b in split_loader(datamodule, "test")])
    stream = make_stream(len(x), 0.5, 0.5, seed=0)
    images = stream_images(x, stream, np.arange(len(stream)))
    seen, hits = set(), 0
    for image in images:
        key = image.numpy().tobytes()
        hits += key in seen
        seen.add(key)
    assert mem["hit_rate"] == pytest.approx(hits / len(stream))
    assert result["test"]["hit_rate"] == mem["hit_rate"]
    # without the memory: on the same stream (compared with `acc`), and on the plain split
    assert result["test"]["acc_no_memory"] == mem["acc_no_memory"]
    little, big = _pair(sweep, "test")
    plain = pair_outputs(little.logits, big.logits, little.labels, "maxp", False)
    assert result["test"]["acc_split"] == pytest.approx(at_threshold(plain, 0.6)[0])
    assert run_memory(image_keys(images, "exact")).hits.sum() == hits
    h, c_l, c_b = mem["hit_rate"], result["little"]["energy_uj"], result["big"]["energy_uj"]
    assert result["test"]["energy_expected_uj"] == pytest.approx(
        (1 - h) * (c_l + mem["p_big"] * c_b)
    )


def test_single_network_run(sweep: Path, tmp_path: Path) -> None:
    result = cascade_task.run(
        _compose("cascade", f"little={sweep / 'all_analog'}", f"output_dir={tmp_path}")
    )
    little, _ = _pair(sweep, "test")
    assert result["test"]["acc"] == pytest.approx(little.acc)
    assert result["test"]["p_big"] == 0.0 and result["big"] is None
    assert result["test"]["energy_expected_uj"] == pytest.approx(result["little"]["energy_uj"])


def test_complementarity_and_pareto_place_the_cascade(sweep: Path, tmp_path: Path) -> None:
    out = complementarity_task.run(
        _compose("complementarity", f"sweep_dir={sweep}", f"out_dir={tmp_path / 'comp'}")
    )
    little, big = _pair(sweep, "val")
    names = out["names"]
    with (tmp_path / "comp" / "complementarity_exactly_one.csv").open() as f:
        rows = list(csv.reader(f))[1:]
    i, j = names.index("all_analog"), names.index("all_digital")
    # ranked on val's select part (the cascade task's default cut), never on its held-out part
    sel = split_val(len(little), 0.5, 0)["select"]
    exactly_one = (little.correct[sel] ^ big.correct[sel]).mean()
    assert float(rows[i][j + 1]) == pytest.approx(exactly_one, abs=1e-6)
    assert json.loads((tmp_path / "comp" / "ranking.json").read_text())["split"] == "select"
    # one pair, the cheaper network (in energy) as little: on 8x8 digits that may be either
    energy = {
        n: json.loads((sweep / n / "preds" / "info.json").read_text())["energy_uj"]
        for n in BASELINES
    }
    cheap, dear = sorted(BASELINES, key=energy.get)
    assert [(r["little"], r["big"]) for r in out["ranking"]] == [(cheap, dear)]
    # a cascade result inside the sweep dir becomes a Pareto point of kind `cascade`
    cascade_task.run(
        _compose(
            "cascade",
            f"little={sweep / 'all_analog'}",
            f"big={sweep / 'all_digital'}",
            f"output_dir={sweep / 'cascades' / 'm'}",
        )
    )
    saved = json.loads((sweep / "cascades" / "m" / "cascade.json").read_text())
    pareto_task.run(_compose("pareto", f"sweep_dir={sweep}", f"out_dir={tmp_path / 'pareto'}"))
    with (tmp_path / "pareto" / "pareto.csv").open() as f:
        points = [r for r in csv.DictReader(f) if r["kind"] == "cascade"]
    assert len(points) == 1 and points[0]["label"] == saved["label"]
    held = saved["val"]["holdout"]
    assert float(points[0]["val_acc_hard"]) == pytest.approx(held["acc"])
    assert float(points[0]["energy_uj"]) == pytest.approx(held["energy_expected_uj"])
    shutil.rmtree(sweep / "cascades")


def test_torchvision_classifier_predictions(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=10)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    info = predict_task.run(
        _compose(
            "predict",
            "dataset=digits",
            "torchvision.name=mobilenet_v3_small",
            f"torchvision.weights={tmp_path / 'w.pt'}",
            "torchvision.channels=3",
            "torchvision.size=[32,32]",
            "torchvision.energy_uj=5.0",
            f"output_dir={tmp_path}",
        )
    )
    preds = load_predictions(preds_path(tmp_path, "test"), "test")
    dm = instantiate(_compose("predict", "dataset=digits").dataset.datamodule)
    x = torch.cat([b[0] for b in split_loader(dm, "test")])[:20]
    net.eval()
    with torch.no_grad():
        ref = net(
            torch.nn.functional.interpolate(
                x.expand(-1, 3, -1, -1), size=(32, 32), mode="bilinear", align_corners=False
            )
        )
    np.testing.assert_allclose(preds.logits[:20], ref.numpy(), atol=1e-4)
    assert info["energy_uj"] == 5.0 and info["latency_ms"] is None


def _entry(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, f"tasks/{script}.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _one_line_error(proc: subprocess.CompletedProcess, text: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], proc.stderr


def test_entry_points_run_and_refuse_bad_input(sweep: Path, tmp_path: Path) -> None:
    little, big = f"little={sweep / 'all_analog'}", f"big={sweep / 'all_digital'}"
    ok = _entry("cascade", little, big, "score=entropy", f"output_dir={tmp_path / 'ok'}")
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "ok" / "cascade.json").read_text())["score"] == "entropy"
    _one_line_error(
        _entry("cascade", little, big, "threshold=1.5", f"output_dir={tmp_path}"),
        "threshold must be a number in [0.0, 1.0]",
    )
    # a run without predictions, and predictions whose labels differ
    bare = tmp_path / "bare"
    bare.mkdir()
    _one_line_error(
        _entry("cascade", f"little={bare}", big, f"output_dir={tmp_path}"), "has no predictions"
    )
    other = tmp_path / "other"
    shutil.copytree(sweep / "all_digital" / "preds", other / "preds")
    with np.load(other / "preds" / "preds_val.npz") as data:
        logits, labels = data["logits"], data["labels"].copy()
    labels[:3] = (labels[:3] + 1) % 10
    np.savez(other / "preds" / "preds_val.npz", logits=logits, labels=labels)
    noisy = other / "preds" / "preds_val_noise.npz"  # the run's noise draws saw the same data
    if noisy.is_file():
        with np.load(noisy) as data:
            np.savez(noisy, logits=data["logits"], labels=labels)
    _one_line_error(
        _entry("cascade", little, f"big={other}", f"output_dir={tmp_path}"),
        "labels differ on 3 samples",
    )
    _one_line_error(_entry("predict", f"run_dir={bare}"), "no final/model.pt")
    _one_line_error(_entry("complementarity", f"sweep_dir={bare}"), "at least 2 finished runs")


@pytest.mark.slow
def test_multirun_ablation(sweep: Path, tmp_path: Path) -> None:
    proc = _entry(
        "cascade",
        "-m",
        f"little={sweep / 'all_analog'}",
        f"big={sweep / 'all_digital'}",
        "score=maxp,margin",
        "postcheck=true,false",
        f"output_dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr
    found = sorted(p.parent.name for p in tmp_path.glob("*/cascade.json"))
    # Hydra's sweeper names the booleans it expands True/False
    assert found == [
        "postcheck=False,score=margin",
        "postcheck=False,score=maxp",
        "postcheck=True,score=margin",
        "postcheck=True,score=maxp",
    ]
