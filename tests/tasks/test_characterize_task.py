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
