# SPDX-License-Identifier: Apache-2.0
"""Candidate sweeps: multirun commands grouped by space and law; finished runs joined back."""

from __future__ import annotations

import json

import pytest
import yaml

from odimo.characterization.candidates import join_runs, parse_key, train_commands
from odimo.characterization.catalogue import record_path, write_catalogue_csv, write_json_atomic
from odimo.errors import OdimoError


def test_commands_group_ids_by_space_and_law():
    keys = ["probe/s1/4", "resnet/s0/2", "probe/s1/30", "probe/s1/4"]
    assert train_commands(keys, ["dataset=digits"]) == [
        "python train.py -m model=sampled model.space=probe model.law=s1 model.id=4,30 "
        "dataset=digits",
        "python train.py -m model=sampled model.space=resnet model.law=s0 model.id=2 "
        "dataset=digits",
    ]
    assert parse_key("vgg/s1/3") is None and parse_key("probe/s1/x") is None
    with pytest.raises(OdimoError, match="not a sampled network key"):
        train_commands(["n1"], [])


def _record(out_dir, net_id):
    write_json_atomic(
        record_path(out_dir, "probe", "s3", net_id),
        {
            "format": "odimo.catalogue/1",
            "key": f"probe/s3/{net_id}",
            "space": "probe",
            "law": "s3",
            "id": net_id,
            "params": 1,
            "macs": 2,
            "layers": 3,
            "costs": {"c_ms": 1.0},
        },
    )


def _run(root, name, net_id, metrics, warm=None, done=True):
    run = root / name
    run.mkdir(parents=True)
    model = {"name": "sampled", "space": "probe", "law": "s3", "id": net_id}
    (run / "config.yaml").write_text(yaml.safe_dump({"model": model}))
    (run / "metrics.json").write_text(json.dumps(metrics))
    if warm is not None:
        (run / "warmup.json").write_text(json.dumps({"val_acc": warm}))
    if done:
        (run / "DONE").write_text("")


def test_finished_runs_join_their_records(tmp_path):
    cat, runs = tmp_path / "cat", tmp_path / "runs"
    _record(cat, 0)
    _record(cat, 1)
    base = {"kind": "baseline", "baseline": "min_latency", "dataset": "digits"}
    _run(runs, "a", 0, {**base, "final/val/acc_hard": 0.9, "final/test/acc_hard": 0.8}, warm=0.95)
    _run(runs, "b", 1, {**base, "final/val/acc_hard": 0.5}, done=False)  # unfinished: skipped
    _run(runs, "c", 7, {**base, "final/val/acc_hard": 0.5})  # not in the catalogue: skipped
    assert join_runs(cat, [runs]) == 1
    write_catalogue_csv(cat)
    results = json.loads(record_path(cat, "probe", "s3", 0).read_text())["results"]
    assert results == {
        "min_latency_val_acc": 0.9,
        "min_latency_test_acc": 0.8,
        "float_val_acc": 0.95,
        "min_latency_dataset": "digits",
    }
    assert "min_latency_val_acc" in (cat / "catalogue.csv").read_text().splitlines()[0]
    with pytest.raises(OdimoError, match="not a folder of runs"):
        join_runs(cat, [tmp_path / "nope"])
