# SPDX-License-Identifier: Apache-2.0
"""Tables and pictures reach the experiment trackers: a recording logger, then real W&B offline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger

from odimo.callbacks import CostLogger
from odimo.hw.config import get_platform
from odimo.pipeline import fit
from odimo.tasks.train import run
from tests.tasks.helpers import train_cfg


class RecordingLogger(CSVLogger):
    """A file logger that also takes media, and records every table and image it is given."""

    calls: list[tuple[str, str, dict]] = []

    def __init__(self, save_dir: str, phase: str):
        super().__init__(save_dir=save_dir, name="rec")
        self.phase = phase

    def log_table(self, key: str, columns: list[str], data: list[list]) -> None:
        self.calls.append((self.phase, key, {"columns": columns, "data": data}))

    def log_image(self, key: str, images: list[str]) -> None:
        assert all(Path(p).is_file() for p in images), images
        self.calls.append((self.phase, key, {"images": images}))


@pytest.fixture
def recorder(monkeypatch):
    RecordingLogger.calls = []
    original = fit.make_loggers

    def make(cfg, phase_dir, phase, job_name):
        return [*original(cfg, phase_dir, phase, job_name), RecordingLogger(str(phase_dir), phase)]

    monkeypatch.setattr(fit, "make_loggers", make)
    return RecordingLogger.calls


def test_search_and_finetune_send_tables_and_pictures(tmp_path, recorder):
    run(train_cfg(tmp_path, "search.epochs=2", "strength=1e-5"))
    keys = [(phase, key) for phase, key, _ in recorder]
    # one layer table per search epoch, then the heat-map and the handed-over mapping
    assert keys.count(("search", "arch/layers")) == 2
    for key in ("arch/cheap_heatmap", "arch/mapping", "arch/mapping_bars"):
        assert keys.count(("search", key)) == 1, key
    assert ("finetune", "arch/mapping") in keys and ("finetune", "arch/mapping_bars") in keys
    assert not [k for k in keys if k[0] == "warmup"]
    layers = [p for phase, key, p in recorder if key == "arch/layers"]
    assert layers[0]["columns"] == [
        "epoch",
        "layer",
        "ch_digital",
        "ch_analog",
        "cheap_frac_soft",
    ]
    assert [len(t["data"]) for t in layers] == [22, 22]
    assert {row[0] for row in layers[1]["data"]} == {1}
    # the mapping table is the run's mapping.json, layer by layer
    mapping = json.loads((tmp_path / "run" / "mapping.json").read_text())
    table = next(p for phase, key, p in recorder if phase == "finetune" and key == "arch/mapping")
    assert table["columns"] == ["layer", "c_out", "digital", "analog"]
    assert [[row[0], row[1], {"digital": row[2], "analog": row[3]}] for row in table["data"]] == [
        [m["name"], m["c_out"], m["channels"]] for m in mapping["layers"]
    ]


def test_baseline_sends_its_mapping(tmp_path, recorder):
    run(train_cfg(tmp_path, "phases=[warmup,baseline]", "baseline=io_digital"))
    keys = {(phase, key) for phase, key, _ in recorder}
    assert keys == {("baseline", "arch/mapping"), ("baseline", "arch/mapping_bars")}


def test_plots_off_sends_tables_only(tmp_path, recorder):
    run(train_cfg(tmp_path, "callbacks.plots=false"))
    keys = {key for _, key, _ in recorder}
    assert keys == {"arch/layers", "arch/mapping"}


def test_heatmap_spans_a_resumed_search(tmp_path):
    """The heat-map reads layers.csv, so epochs of an earlier attempt stay in the picture."""
    run(train_cfg(tmp_path, "search.epochs=1", "phases=[warmup,search]"))
    table = tmp_path / "run" / "search" / "layers.csv"
    rows = list(csv.DictReader(table.open()))
    # an earlier attempt's epoch 0 (fractions 0.25), then this attempt's epochs 0 (again) and 1
    with table.open("a", newline="") as f:
        writer = csv.writer(f)
        for r in rows:
            writer.writerow([1, r["layer"], r["ch_digital"], r["ch_analog"], 0.25])

    class Net:
        names = [r["layer"] for r in rows]
        platform = get_platform("diana")

    logger = CostLogger(Net(), table.parent)
    history = logger.heatmap_history()
    assert [e for e, _ in history] == [0, 1]
    assert history[1][1] == [0.25] * len(rows)
    assert logger.plot_heatmap().name == "cheap_heatmap.png"


def test_wandb_offline_run_holds_the_media(tmp_path, monkeypatch):
    """The real W&B logger, offline: each phase is a run of the sweep's group with its media."""
    import wandb  # noqa: F401

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_home"))
    run(train_cfg(tmp_path, "logger=wandb", "sweep_name=grp"))
    runs = sorted((tmp_path / "run" / "search" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = runs[0] / "files" / "media"
    assert list((media / "table" / "arch").glob("layers_*.table.json"))
    assert list((media / "table" / "arch").glob("mapping_*.table.json"))
    images = {p.name.split("_")[0] for p in (media / "images" / "arch").glob("*.png")}
    assert {"cheap", "mapping"} <= images
    # the run record carries the sweep's group; the fine-tune is a run of its own
    record = next(runs[0].glob("run-*.wandb")).read_bytes()
    assert b"grp" in record
    assert list((tmp_path / "run" / "finetune" / "wandb").glob("offline-run-*"))
