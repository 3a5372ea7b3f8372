# SPDX-License-Identifier: Apache-2.0
"""The Pareto task end to end: composed config, fake sweep, outputs, entry point exit codes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from odimo.analysis.pareto import non_dominated
from odimo.analysis.sweep_fronts import CSV_COLUMNS
from odimo.errors import ConfigError, OdimoError
from odimo.tasks.pareto import run

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# λ, latency ms, energy µJ, val acc, test acc, analog fraction
SEARCH = [
    (0.0, 2.0, 20.0, 0.950, 0.940, 0.00),
    (1e-7, 1.2, 14.0, 0.940, 0.930, 0.20),
    (1e-6, 0.8, 10.0, 0.930, 0.920, 0.45),
    (1e-5, 0.5, 9.0, 0.900, 0.900, 0.60),
    (1e-4, 0.45, 12.0, 0.850, 0.860, 0.70),
    (1e-3, 0.3, 6.0, 0.800, 0.790, 0.85),
]
BASELINES = [
    ("all_digital", 2.5, 25.0, 0.955, 0.950, 0.0),
    ("all_analog", 0.2, 3.0, 0.600, 0.580, 1.0),
    ("io_digital", 0.35, 5.0, 0.750, 0.740, 0.9),
    ("min_latency", 0.9, 11.0, 0.910, 0.900, 0.5),
    ("min_latency_max8", 1.0, 12.0, 0.920, 0.910, 0.4),
]


def _metrics(
    kind: str, name: Any, lat: float, energy: float, val: float, test: float, frac: float
) -> dict[str, Any]:
    return {
        "kind": kind,
        "baseline": name if kind == "baseline" else None,
        "reg": "latency" if kind == "search" else "none",
        "strength": name if kind == "search" else 0.0,
        "model": "res20",
        "dataset": "digits",
        "seed": 0,
        "final/val/acc_hard": val,
        "final/test/acc_hard": test,
        "final/cost/latency_hard_ms": lat,
        "final/cost/latency_hard_cycles": lat * 260_000,
        "final/cost/energy_hard_uj": energy,
        "final/arch/analog_frac": frac,
    }


def make_sweep(root: Path) -> Path:
    """6 finished search jobs, 5 finished baselines, one running job and one corrupt one."""
    jobs = [("search", f"strength={s[0]:g}", s) for s in SEARCH]
    jobs += [("baseline", f"baseline/{b[0]}", b) for b in BASELINES]
    for kind, rel, values in jobs:
        job = root / rel
        job.mkdir(parents=True)
        (job / "metrics.json").write_text(json.dumps(_metrics(kind, *values)))
        (job / "DONE").write_text("")
    running = root / "strength=0.01"
    running.mkdir()
    (running / "metrics.json").write_text(json.dumps(_metrics("search", 0.01, *SEARCH[0][1:])))
    corrupt = root / "strength=0.1"
    corrupt.mkdir()
    (corrupt / "metrics.json").write_text("{not json")
    (corrupt / "DONE").write_text("")
    return root


def compose_cfg(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="pareto", overrides=overrides)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_run_writes_consistent_outputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sweep = make_sweep(tmp_path / "sweep")
    result = run(compose_cfg([f"sweep_dir={sweep}"]))
    names = [
        "pareto.csv",
        "selection.json",
        "budgets.csv",
        "pareto_latency.png",
        "pareto_energy.png",
    ]
    for name in names:
        assert (sweep / name).is_file(), name
    assert result["n_jobs"] == 11 and result["n_skipped"] == 2
    assert result["skipped"] == {"corrupt": 1, "unfinished": 1}

    rows = read_csv(sweep / "pareto.csv")
    assert len(rows) == 11 and list(rows[0]) == list(CSV_COLUMNS)
    val = np.array([float(r["val_acc_hard"]) for r in rows])
    for name, col in (("latency", "latency_ms"), ("energy", "energy_uj")):
        flags = [r[f"on_front_{name}"] == "true" for r in rows]
        assert flags == non_dominated([float(r[col]) for r in rows], val).tolist()
    by_label = {r["label"]: r for r in rows}
    assert by_label["min_latency"]["on_front_latency"] == "false"  # beaten by λ=1e-06
    assert by_label["λ=0.0001"]["on_front_energy"] == "false"
    selected = [r["label"] for r in rows if r["selected"] == "true"]
    assert len(selected) == 5 == result["n_selected"]
    assert all(by_label[label]["on_front_latency"] == "true" for label in selected)

    selection = json.loads((sweep / "selection.json").read_text())
    assert selection["k"] == 5 and selection["criterion"] == "val_acc_hard"
    assert sorted(r["label"] for r in selection["latency"]) == sorted(selected)
    assert all(by_label[r["label"]]["on_front_energy"] == "true" for r in selection["energy"])
    assert selection["hypervolume_log10cost"]["latency"] > 0
    assert selection["hypervolume_log10cost"] == result["hypervolume_log10cost"]

    budgets = read_csv(sweep / "budgets.csv")
    assert len(budgets) == 10 and {b["metric"] for b in budgets} == {"latency", "energy"}
    top = [b for b in budgets if b["metric"] == "latency"][-1]
    assert top["label"] == "all_digital" and float(top["budget"]) == pytest.approx(2.5)

    for name in ("pareto_latency.png", "pareto_energy.png"):
        data = (sweep / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000
    out = capsys.readouterr().out
    assert "all_digital" in out and "skipped 2 jobs" in out


def test_budgets_and_out_dir(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "sweep")
    out = tmp_path / "report"
    cfg = compose_cfg(
        [
            f"sweep_dir={sweep}",
            f"out_dir={out}",
            "k=2",
            "latency_budgets_ms=[0.1,0.6]",
            "energy_budgets_uj=[100]",
        ]
    )
    result = run(cfg)
    assert result["n_selected"] == 2 and not (sweep / "pareto.csv").exists()
    budgets = read_csv(out / "budgets.csv")
    assert [(b["metric"], b["label"]) for b in budgets] == [
        ("latency", ""),  # nothing runs in 0.1 ms
        ("latency", "λ=1e-05"),
        ("energy", "all_digital"),
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("k=0", "k must be"),
        ("latency_budgets_ms=[-1]", "latency_budgets_ms"),
        ("report_to=mlflow", "report_to must be"),
    ],
)
def test_bad_settings(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run(compose_cfg([f"sweep_dir={tmp_path}", override]))


def test_missing_sweep_dir_and_empty_sweep(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sweep_dir is required"):
        run(compose_cfg([]))
    with pytest.raises(OdimoError, match="no finished jobs under"):
        run(compose_cfg([f"sweep_dir={tmp_path}"]))


def test_wandb_logging_with_a_stand_in_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, Any] = {}

    class FakeRun:
        summary: dict[str, float] = {}

        def log(self, data: dict[str, Any]) -> None:
            calls["log"] = data

        def finish(self) -> None:
            calls["finished"] = True

    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls.setdefault("init", kw) and FakeRun()  # type: ignore[attr-defined]
    fake.Table = lambda columns, data: ("table", columns, data)  # type: ignore[attr-defined]
    fake.Image = lambda path: ("image", path)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    sweep = make_sweep(tmp_path / "my_sweep")
    run(compose_cfg([f"sweep_dir={sweep}", "report_to=wandb"]))
    assert calls["init"]["job_type"] == "pareto" and calls["init"]["group"] == "my_sweep"
    assert calls["log"]["pareto/table"][0] == "table" and len(calls["log"]["pareto/table"][2]) == 11
    assert calls["log"]["pareto/latency"] == ("image", str(sweep / "pareto_latency.png"))
    assert calls["finished"]


def _entry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "tasks/pareto.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_entry_point_runs(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "sweep")
    proc = _entry(f"sweep_dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    assert (sweep / "pareto.csv").is_file() and "λ=1e-06" in proc.stdout
    assert not (ROOT / "pareto.log").exists()


def test_entry_point_empty_sweep_is_one_line_error(tmp_path: Path) -> None:
    proc = _entry(f"sweep_dir={tmp_path}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no finished jobs under")


def test_hypervolumes_of_single_networks_cascades_and_both(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sweep = tmp_path / "sweep"
    singles = [("baseline/all_digital", 2.0, 20.0, 0.95), ("baseline/all_analog", 0.2, 2.0, 0.6)]
    for rel, lat, energy, acc in singles:
        (sweep / rel).mkdir(parents=True)
        metrics = _metrics("baseline", Path(rel).name, lat, energy, acc, acc, 0.5)
        (sweep / rel / "metrics.json").write_text(json.dumps(metrics))
        (sweep / rel / "DONE").write_text("")
    # the cascade sits between the two: cheaper than all_digital, nearly as accurate
    held = {"acc": 0.94, "latency_expected_ms": 0.9, "energy_expected_uj": 9.0}
    (sweep / "cascades" / "m").mkdir(parents=True)
    (sweep / "cascades" / "m" / "cascade.json").write_text(
        json.dumps({"label": "c", "val": {"acc": 0.99, "holdout": held}, "test": {"acc": 0.9}})
    )
    refs = ["hypervolume_ref_latency_ms=4.0", "hypervolume_ref_energy_uj=40.0"]
    result = run(compose_cfg([f"sweep_dir={sweep}", *refs]))
    selection = json.loads(Path(result["selection_json"]).read_text())
    got = selection["hypervolume_by_kind_log10cost"]
    assert got == result["hypervolume_by_kind_log10cost"]
    for name, i, ref in (("latency", 1, 4.0), ("energy", 2, 40.0)):
        c_dig, c_ana = singles[0][i], singles[1][i]
        c_cas = held[("latency_expected_ms", "energy_expected_uj")[i - 1]]
        # independent: the staircase's area in log10(cost) × acc up to the reference cost; the
        # cascade counts at its held-out accuracy 0.94, not at val's 0.99
        expect = {
            "single": 0.6 * np.log10(c_dig / c_ana) + 0.95 * np.log10(ref / c_dig),
            "cascade": 0.94 * np.log10(ref / c_cas),
            "all": 0.6 * np.log10(c_cas / c_ana)
            + 0.94 * np.log10(c_dig / c_cas)
            + 0.95 * np.log10(ref / c_dig),
        }
        assert got[name] == pytest.approx(expect)
    assert "cascades 0." in capsys.readouterr().out


def _add_chip_accuracy(sweep: Path, skip: str | None = None) -> dict[str, float]:
    """Give every finished job an accuracy under read-out noise that penalises analog channels
    (val − 0.3·analog fraction), so that the chip front differs from the noiseless one."""
    chip = {}
    for metrics in sweep.rglob("metrics.json"):
        if not (metrics.parent / "DONE").exists() or metrics.parent.name == skip:
            continue
        try:
            data = json.loads(metrics.read_text())
        except json.JSONDecodeError:
            continue
        value = data["final/val/acc_hard"] - 0.3 * data["final/arch/analog_frac"]
        data["final/val/acc_chip_mean"] = value
        data["final/test/acc_chip_mean"] = (
            data["final/test/acc_hard"] - 0.3 * data["final/arch/analog_frac"]
        )
        metrics.write_text(json.dumps(data))
        chip[metrics.parent.relative_to(sweep).as_posix()] = value
    return chip


def test_fronts_use_the_chip_accuracy_when_every_network_has_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sweep = make_sweep(tmp_path / "sweep")
    _add_chip_accuracy(sweep)
    fronts = {}
    for accuracy in ("auto", "hard"):
        out = tmp_path / accuracy
        run(compose_cfg([f"sweep_dir={sweep}", f"out_dir={out}", f"accuracy={accuracy}"]))
        rows = read_csv(out / "pareto.csv")
        selection = json.loads((out / "selection.json").read_text())
        column = {"auto": "val_acc_chip", "hard": "val_acc_hard"}[accuracy]
        assert selection["criterion"] == column
        cost = np.array([float(r["latency_ms"]) for r in rows])
        acc = np.array([float(r[column]) for r in rows])
        expected = non_dominated(cost, acc)
        assert [r["on_front_latency"] == "true" for r in rows] == expected.tolist()
        fronts[accuracy] = {r["label"] for r in rows if r["on_front_latency"] == "true"}
    assert fronts["auto"] != fronts["hard"]
    assert "acc_chip_mean" in capsys.readouterr().out


def test_a_network_without_chip_accuracy_falls_back_or_is_refused(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "sweep")
    _add_chip_accuracy(sweep, skip="all_analog")
    run(compose_cfg([f"sweep_dir={sweep}", f"out_dir={tmp_path / 'auto'}"]))
    assert json.loads((tmp_path / "auto" / "selection.json").read_text())["criterion"] == (
        "val_acc_hard"
    )
    with pytest.raises(ConfigError, match="accuracy=chip: 1 jobs have no accuracy under"):
        run(compose_cfg([f"sweep_dir={sweep}", "accuracy=chip"]))
    with pytest.raises(ConfigError, match="accuracy='noisy' is not one of"):
        run(compose_cfg([f"sweep_dir={sweep}", "accuracy=noisy"]))
