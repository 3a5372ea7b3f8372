# SPDX-License-Identifier: Apache-2.0
"""The characterize task: records and catalogue, costs checked by hand, resume, bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from odimo.errors import ConfigError
from odimo.hw import record_geometry
from odimo.models import ModelSpec, build_model
from odimo.tasks.characterize import parse_ids, run
from tests.reference import RefCost
from tests.tasks.helpers import CONF, REPO

FAST = ["timing.repeats=3", "timing.warmup=1", "progress=false"]


def cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("characterize", [f"output_dir={tmp_path}", *FAST, *overrides])


def entry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "tasks/characterize.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_entry_point_writes_records_catalogue_and_host(tmp_path):
    res = entry("space=[probe,mobilenetv2]", "law=s3", "ids=0:2", f"output_dir={tmp_path}", *FAST)
    assert res.returncode == 0, res.stderr
    rows = read_csv(tmp_path / "catalogue.csv")
    assert [r["key"] for r in rows] == [
        "mobilenetv2/s3/0",
        "mobilenetv2/s3/1",
        "probe/s3/0",
        "probe/s3/1",
    ]
    host = json.loads((tmp_path / "host.json").read_text())
    assert {"cpu", "threads", "torch", "load_1min"} <= set(host) and host["threads"] == 1
    for row in rows:
        space, law, net_id = row["key"].split("/")
        spec = ModelSpec(
            "sampled", (3, 32, 32), 10, (("id", int(net_id)), ("law", law), ("space", space))
        )
        geometry = record_geometry(build_model(spec, "float"), (3, 32, 32))
        digital_ms = sum(RefCost.digital(g, g.c_out) for g in geometry) / 260e6 * 1e3
        assert float(row["diana_all_digital_ms"]) == pytest.approx(digital_ms, rel=1e-5)
        assert float(row["diana_min_latency_ms"]) <= float(row["diana_all_digital_ms"]) * 1.00001
        macs = sum(g.c_in // g.groups * g.c_out * g.k_x * g.k_y * g.o_x * g.o_y for g in geometry)
        assert int(row["macs"]) == macs
        assert 0 < float(row["host_cpu_ms"]) <= float(row["host_cpu_p95_ms"])


def test_rerun_skips_measured_ids_and_adds_missing_platforms(tmp_path):
    first = run(cfg(tmp_path, "space=probe", "law=s3", "ids=0:3", "platforms=[diana]"))
    assert first["n_measured"] == 3
    record = tmp_path / "records" / "probe_s3_1.json"
    before = json.loads(record.read_text())["costs"]
    assert not any(k.startswith("host_cpu") for k in before)
    again = run(cfg(tmp_path, "space=probe", "law=s3", "ids=0:3", "platforms=[diana]"))
    assert again["n_measured"] == 0 and again["n_skipped"] == 3
    more = run(cfg(tmp_path, "space=probe", "law=s3", "ids=[1,4]"))
    assert more["n_measured"] == 2 and more["n_rows"] == 4
    after = json.loads(record.read_text())["costs"]
    assert "host_cpu_ms" in after and all(after[k] == v for k, v in before.items())


@pytest.mark.parametrize(
    "value, ids",
    [("0:3", [0, 1, 2]), ("2:10:4", [2, 6]), (5, [5]), ([3, 1], [3, 1])],
)
def test_id_ranges(value, ids):
    assert parse_ids(value) == ids


@pytest.mark.parametrize("value", ["0-5", "a:b", "5:2", -1, "7", [1, "x"], True])
def test_bad_id_range_is_a_config_error(value):
    with pytest.raises(ConfigError, match="ids must be a range"):
        parse_ids(value)


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path):
    res = entry("ids=0-5", f"output_dir={tmp_path}", *FAST)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "ids must be a range start:stop" in lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["space=vgg"], "unknown space 'vgg'"),
        (["law=s7"], "unknown law 's7' of space probe"),
        (["platforms=[host_cpu,tpu]"], "unknown platform 'tpu'"),
        (["mappings=[fastest]"], "unknown mapping 'fastest'"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path, args, message):
    with pytest.raises(ConfigError, match=message):
        run(cfg(tmp_path, *args))


def _diana_ms(space, law, net_id, size):
    spec = ModelSpec("sampled", size, 10, (("id", net_id), ("law", law), ("space", space)))
    geometry = record_geometry(build_model(spec, "float"), size)
    return sum(RefCost.digital(g, g.c_out) for g in geometry) / 260e6 * 1e3


def test_a_changed_request_measures_exactly_the_changed_networks(tmp_path, capsys):
    base = ["space=probe", "law=s3", "platforms=[diana]"]
    run(cfg(tmp_path, *base, "ids=0:3"))
    untouched = (tmp_path / "records" / "probe_s3_0.json").read_bytes()
    capsys.readouterr()
    second = run(cfg(tmp_path, *base, "ids=[1,2,3]", "input_size=[1,16,16]"))
    assert second["measured"] == {f"probe/s3/{i}": ["diana"] for i in (1, 2, 3)}
    assert second["reasons"] == {"changed input_size": 2, "new": 1}
    printed = capsys.readouterr().out
    assert "3 networks asked, 0 up to date, 3 to measure" in printed
    assert "2 networks: changed input_size" in printed and "1 network: new" in printed
    assert (tmp_path / "records" / "probe_s3_0.json").read_bytes() == untouched
    rows = {r["key"]: r for r in read_csv(tmp_path / "catalogue.csv")}
    assert [rows[f"probe/s3/{i}"]["input_size"] for i in range(4)] == [
        "3x32x32",
        "1x16x16",
        "1x16x16",
        "1x16x16",
    ]
    for i, size in ((0, (3, 32, 32)), (1, (1, 16, 16))):
        expected = _diana_ms("probe", "s3", i, size)
        assert float(rows[f"probe/s3/{i}"]["diana_all_digital_ms"]) == pytest.approx(expected)
    # the same request again: nothing to do
    assert run(cfg(tmp_path, *base, "ids=[1,2,3]", "input_size=[1,16,16]"))["n_measured"] == 0
    # other mappings on one network: only its diana columns, the old ones gone
    third = run(cfg(tmp_path, *base, "ids=[1]", "input_size=[1,16,16]", "mappings=[min_latency]"))
    assert third["reasons"] == {"diana changed (mappings)": 1}
    costs = json.loads((tmp_path / "records" / "probe_s3_1.json").read_text())["costs"]
    assert set(costs) == {"diana_min_latency_ms", "diana_min_latency_uj"}


def test_networks_are_measured_in_a_seeded_random_order(tmp_path):
    import random

    out = run(cfg(tmp_path, "space=[probe,mobilenetv2]", "law=s3", "ids=0:3", "timing.repeats=2"))
    plan = [f"{s}/s3/{i}" for s in ("probe", "mobilenetv2") for i in range(3)]
    assert sorted(out["order"]) == sorted(plan) and out["order"] != plan
    assert out["order"] == random.Random(0).sample(plan, len(plan))
    record = json.loads((tmp_path / "records" / "probe_s3_0.json").read_text())
    assert record["costs"]["host_cpu_ms"] > 0 and 0 <= record["costs"]["host_cpu_busy_others"] <= 1
    assert record["inputs"]["host_cpu"]["timing"]["repeats"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["input_size=[3,32]"], "input_size must be"),
        (["timing.repeats=0"], "timing.repeats must be an integer >= 1"),
        (["num_classes=0"], "num_classes must be an integer >= 1"),
        (["+timing.rounds=3"], "unknown timing key 'rounds'"),
    ],
)
def test_bad_requests_are_config_errors(tmp_path, args, message):
    with pytest.raises(ConfigError, match=message):
        run(cfg(tmp_path, *args))


def test_an_interrupted_run_keeps_its_finished_groups(tmp_path, monkeypatch):
    from odimo.characterization import measure

    real, calls = measure.measure_group, []

    def second_group_breaks(works, out_dir, request):
        calls.append([w.net_id for w in works])
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(works, out_dir, request)

    monkeypatch.setattr(measure, "measure_group", second_group_breaks)
    args = ["space=probe", "law=s3", "ids=0:5", "platforms=[diana]", "timing.group=2"]
    with pytest.raises(KeyboardInterrupt):
        run(cfg(tmp_path, *args))
    done = sorted(int(p.stem.split("_")[-1]) for p in (tmp_path / "records").glob("*.json"))
    assert done == sorted(calls[0]) and len(done) == 2
    monkeypatch.setattr(measure, "measure_group", real)
    again = run(cfg(tmp_path, *args))
    assert again["n_skipped"] == 2 and sorted(again["measured"]) == sorted(
        f"probe/s3/{i}" for i in range(5) if i not in done
    )
