# SPDX-License-Identifier: Apache-2.0
"""Pareto task, catalogue mode: fronts per cost column, overlap, correlation, proxy regret."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from odimo.analysis.catalogue_fronts import LogLogFit, analyse, load_table
from odimo.errors import ConfigError
from odimo.tasks.pareto import run
from tests.tasks.helpers import CONF, REPO

#: name, family, proxy (macs), cost a, cost b, accuracy. Front of a (min a, max acc): n1, n3,
#: n5; front of b: n2, n3, n5 (n1 is slow on b). Shared: n3, n5.
TABLE = [
    ("n1", "f", 10, 1.0, 9.0, 0.50),
    ("n2", "f", 20, 2.5, 1.0, 0.55),
    ("n3", "g", 40, 2.0, 2.0, 0.70),
    ("n4", "g", 80, 6.0, 5.0, 0.65),
    ("n5", "g", 160, 8.0, 6.0, 0.90),
]


def write_table(path):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["net", "family", "macs", "lat_a", "lat_b", "acc"])
        w.writerows(TABLE)
    return path


def cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("pareto", list(overrides))


def test_fronts_overlap_budgets_and_correlation_by_hand(tmp_path):
    src = write_table(tmp_path / "t.csv")
    out = run(
        cfg(
            f"catalogue={src}",
            "x=[lat_a,lat_b]",
            "y=acc",
            "name=net",
            "k=2",
            "budgets=[2.2,7.0]",
            f"output_dir={tmp_path / 'o'}",
        )
    )
    assert out["n_front"] == {"lat_a": 3, "lat_b": 3} and out["overlap"] == {"lat_a|lat_b": 2}
    rows = list(csv.DictReader((tmp_path / "o" / "pareto.csv").open()))
    assert [r["net"] for r in rows if r["on_front_lat_a"] == "true"] == ["n1", "n3", "n5"]
    assert [r["net"] for r in rows if r["on_front_lat_b"] == "true"] == ["n2", "n3", "n5"]
    assert set(rows[0]) >= {"net", "family", "macs", "lat_a", "lat_b", "acc"}  # columns kept
    budgets = list(csv.DictReader((tmp_path / "o" / "budgets.csv").open()))
    got = [(b["cost_column"], float(b["budget"]), b["name"]) for b in budgets]
    assert got == [
        ("lat_a", 2.2, "n3"),
        ("lat_a", 7.0, "n3"),
        ("lat_b", 2.2, "n3"),
        ("lat_b", 7.0, "n5"),
    ]
    sel = json.loads((tmp_path / "o" / "selection.json").read_text())
    assert [s["name"] for s in sel["selected"]["lat_a"]] == ["n1", "n5"]  # k=2 over log cost
    # Spearman by hand: ranks of a (1,3,2,4,5) and b (5,1,2,3,4): d² = 16+4+0+1+1 = 22
    assert sel["spearman"]["lat_a|lat_b"] == pytest.approx(1 - 6 * 22 / (5 * 24))
    assert (tmp_path / "o" / "pareto_catalogue.png").stat().st_size > 1000


def test_loglog_fit_is_exact_on_a_power_law():
    proxy = np.array([1.0, 10.0, 100.0, 1000.0])
    fit = LogLogFit.fit(proxy, 3.0 * proxy**0.5, None)
    intercept, slope = fit.coefs[None]
    assert slope == pytest.approx(0.5) and intercept == pytest.approx(np.log10(3.0))
    assert fit.predict(np.array([10000.0])) == pytest.approx([300.0])


def test_proxy_regret_chooses_by_predicted_cost(tmp_path):
    rows = load_table(write_table(tmp_path / "t.csv"))
    result = analyse(rows, ["lat_b"], "acc", "net", 5, {"lat_b": [3.1, 3.3]}, proxy="macs")
    got = [r for r in result["proxy"]["rows"] if r["fit"] == "global"]
    # The log-log line of b on macs predicts 3.00, 3.25, 3.52, 3.81, 4.13 (n1..n5).
    # Budget 3.1: the proxy believes only n1 fits (true cost 9.0: a violation); measured: n3.
    # Budget 3.3: the proxy picks n2 (0.55, true 1.0); measured: n3 (0.70).
    assert [(r["measured_name"], r["proxy_name"], r["proxy_violates"]) for r in got] == [
        ("n3", "n1", True),
        ("n3", "n2", False),
    ]
    assert [r["regret_y"] for r in got] == pytest.approx([0.20, 0.15])


def test_json_records_folder_is_a_catalogue(tmp_path):
    (tmp_path / "records").mkdir()
    for name, fam, macs, a, _b, acc in TABLE:
        rec = {
            "key": name,
            "space": fam,
            "macs": macs,
            "costs": {"lat_a": a},
            "results": {"acc": acc},
        }
        (tmp_path / "records" / f"{name}.json").write_text(json.dumps(rec))
    rows = load_table(tmp_path)
    assert rows[0] == {"key": "n1", "space": "f", "macs": 10, "lat_a": 1.0, "acc": 0.5}


def test_missing_column_is_one_line_and_a_nonzero_exit(tmp_path):
    src = write_table(tmp_path / "t.csv")
    with pytest.raises(ConfigError, match="no column 'latency'"):
        run(cfg(f"catalogue={src}", "x=latency", "y=acc", "name=net"))
    res = subprocess.run(
        [
            sys.executable,
            "tasks/pareto.py",
            f"catalogue={src}",
            "x=[lat_a,energy]",
            "y=acc",
            "name=net",
            f"output_dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no column 'energy'" in lines[0]
