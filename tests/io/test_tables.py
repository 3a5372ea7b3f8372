# SPDX-License-Identifier: Apache-2.0
"""CSV and JSON outputs: the same bytes as a plain csv.writer file, strict JSON, atomic."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from odimo.io import csv_cell, json_safe, write_csv, write_json, write_records_csv


def test_csv_bytes_equal_a_plain_csv_writer_file(tmp_path):
    rows = [["a,b", 1.5, "é"], ["x", 'quote"d', ""]]
    plain = tmp_path / "plain.csv"
    with plain.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["h1", "h2", "h3"])
        writer.writerows(rows)
    ours = write_csv(tmp_path / "ours.csv", ["h1", "h2", "h3"], rows)
    assert ours.read_bytes() == plain.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))


def test_records_csv_cells():
    assert [csv_cell(v) for v in (None, math.nan, True, False, 0, "s")] == [
        "",
        "",
        "true",
        "false",
        0,
        "s",
    ]


def test_records_csv_missing_keys_are_empty(tmp_path):
    path = write_records_csv(tmp_path / "r.csv", ["a", "b"], [{"a": 1}, {"b": math.inf}])
    assert path.read_text().splitlines() == ["a,b", "1,", ","]


def test_json_is_strict(tmp_path):
    data = {"x": [np.float32(0.5), math.nan], "n": np.int64(3), "s": "µ"}
    assert json_safe(data) == {"x": [0.5, None], "n": 3, "s": "µ"}
    text = write_json(tmp_path / "a.json", data, ensure_ascii=False).read_text()
    assert json.loads(text) == {"x": [0.5, None], "n": 3, "s": "µ"} and "µ" in text
    with pytest.raises(TypeError):  # the raw data would not even serialise
        json.dumps(data)
