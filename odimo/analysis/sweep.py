# SPDX-License-Identifier: Apache-2.0
"""Collect the finished jobs of a sweep directory.

A sweep dir holds one sub-directory per job, at most two levels below it. A job dir has a flat
`metrics.json`; the job is finished when a `DONE` marker lies next to it. Jobs still running,
failed (`FAILED` marker) or with an unreadable `metrics.json` are skipped with a reason, never
fatal. A job dir inside another job dir (e.g. a phase sub-directory) belongs to the outer job.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odimo.hw import platform_key

log = logging.getLogger(__name__)

#: Numeric keys read from metrics.json; a missing or non-numeric value becomes NaN.
NUMBER_KEYS = (
    "strength",
    "seed",
    "final/val/acc_hard",
    "final/test/acc_hard",
    "final/cost/latency_hard_ms",
    "final/cost/latency_hard_cycles",
    "final/cost/energy_hard_uj",
    "final/arch/cheap_frac",
    "final/target/value",
    "final/val/acc_chip_mean",
    "final/test/acc_chip_mean",
    "final/test/acc_chip_std",
)
#: Text keys read from metrics.json; a missing value becomes None.
TEXT_KEYS = (
    "kind",
    "baseline",
    "reg",
    "model",
    "dataset",
    "final/target/unit",
    "final/accuracy_arithmetic",  # chip_adc (noiseless ADC) | ideal (exact analog sums)
)
#: Keys without which a job cannot be placed on a front.
REQUIRED_FOR_FRONTS = (
    "final/val/acc_hard",
    "final/cost/latency_hard_ms",
    "final/cost/energy_hard_uj",
)

#: How deep below the sweep dir a job dir may lie (0 = the sweep dir itself is one job).
MAX_JOB_DEPTH = 2


@dataclass
class SweepScan:
    """What a sweep dir holds: finished jobs and the (job dir, reason) of every skipped one."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip_counts(self) -> dict[str, int]:
        """Number of skipped jobs per reason kind (the text before the first colon)."""
        return dict(Counter(reason.split(":", 1)[0] for _, reason in self.skipped))


def _number(value: Any) -> float:
    """A JSON value as float; NaN when it is missing, a bool, or not a number."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def job_label(job: dict[str, Any]) -> str:
    """`λ=1e-06` for a search job, `≤0.4 ms` for a target-mode one, a baseline's name."""
    if job.get("kind") == "baseline":
        return str(job.get("baseline") or "baseline")
    target = job.get("final/target/value", math.nan)
    if isinstance(target, float) and math.isfinite(target):
        return f"≤{target:g} {job.get('final/target/unit') or ''}".rstrip()
    strength = job.get("strength", math.nan)
    return f"λ={strength:g}" if math.isfinite(strength) else "λ=?"


def _candidate_files(sweep_dir: Path) -> list[Path]:
    """metrics.json files of job dirs up to MAX_JOB_DEPTH below sweep_dir, outermost first."""
    found: list[Path] = []
    for depth in range(MAX_JOB_DEPTH + 1):
        pattern = "/".join(["*"] * depth + ["metrics.json"])
        found.extend(sorted(p for p in sweep_dir.glob(pattern) if p.is_file()))
    outer: set[Path] = set()
    kept: list[Path] = []
    for path in found:
        job_dir = path.parent
        if any(parent in outer for parent in job_dir.parents):
            continue
        outer.add(job_dir)
        kept.append(path)
    return kept


def _unfinished_reason(job_dir: Path) -> str | None:
    """None for a finished job, else why it is skipped (the newer marker wins if both exist)."""
    done, failed = job_dir / "DONE", job_dir / "FAILED"
    if done.exists() and failed.exists():
        if done.stat().st_mtime >= failed.stat().st_mtime:
            return None
        return "failed: FAILED marker newer than DONE"
    if failed.exists():
        return "failed: FAILED marker"
    if not done.exists():
        return "unfinished: no DONE marker"
    return None


def read_job(path: Path) -> dict[str, Any]:
    """Parse one job's metrics.json into a normalised dict.

    Raises:
        ValueError: the file cannot be read or is not valid JSON.
        TypeError: the JSON is not an object.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(str(err)) from err
    if not isinstance(raw, dict):
        raise TypeError(f"expected a JSON object, got {type(raw).__name__}")
    job: dict[str, Any] = {key: _number(raw.get(key)) for key in NUMBER_KEYS}
    for key in TEXT_KEYS:
        value = raw.get(key)
        job[key] = None if value is None else str(value)
    if job["kind"] is None:
        job["kind"] = "baseline" if job["baseline"] else "search"
    if job["kind"] == "baseline" and not math.isfinite(job["strength"]):
        job["strength"] = 0.0
    if not math.isfinite(job["final/arch/cheap_frac"]):  # results written before the name
        job["final/arch/cheap_frac"] = _number(raw.get("final/arch/analog_frac"))
    job["platform"] = platform_key(raw.get("platform"))  # name@fingerprint of the cost model
    job["missing"] = [key for key in REQUIRED_FOR_FRONTS if not math.isfinite(job[key])]
    job["job_dir"] = str(path.parent)
    job["label"] = job_label(job)
    return job


def scan_sweep(sweep_dir: str | Path) -> SweepScan:
    """Read every job of a sweep dir; finished ones go to `jobs`, the others to `skipped`.

    Each job dict has the metrics.json keys of NUMBER_KEYS and TEXT_KEYS (NaN/None when absent),
    `job_dir` (absolute), `label`, and `missing` (the keys without which it cannot be on a front).
    """
    sweep_dir = Path(sweep_dir).resolve()
    scan = SweepScan()
    for path in _candidate_files(sweep_dir):
        reason = _unfinished_reason(path.parent)
        if reason is None:
            try:
                scan.jobs.append(read_job(path))
                continue
            except (ValueError, TypeError) as err:
                reason = f"corrupt: {path}: {err}"
                log.warning("skipping job with corrupt metrics.json %s: %s", path, err)
        scan.skipped.append((str(path.parent), reason))
    for job in scan.jobs:
        if job["missing"]:
            log.warning(
                "job %s lacks %s: it is listed but kept off the fronts",
                job["job_dir"],
                ", ".join(job["missing"]),
            )
    disambiguate_labels(scan.jobs)
    return scan


#: How deep below the sweep dir a cascade's `cascade.json` may lie.
MAX_CASCADE_DEPTH = 3


def _cascade_point(raw: dict[str, Any], path: Path) -> dict[str, float]:
    """The front's numbers of a cascade: accuracy and expected costs on the held-out part of val
    (the threshold was chosen on the other part), test accuracy on the plain test split. Files
    from before the cut have only whole-val figures, chosen on the same images: used, with a
    warning that they are optimistic."""
    val, test = raw["val"], raw["test"]
    point = val.get("holdout")
    if point is None:
        log.warning(
            "cascade %s predates the held-out part of val: its accuracy is that of the threshold "
            "on the images it was chosen on (optimistic); run tasks/cascade.py again",
            path,
        )
        point = val
    acc_test = test.get("acc_split", test.get("acc_no_memory", test["acc"]))
    return {
        "final/val/acc_hard": _number(point.get("acc")),
        "final/test/acc_hard": _number(acc_test),
        "final/cost/latency_hard_ms": _number(point.get("latency_expected_ms")),
        "final/cost/energy_hard_uj": _number(point.get("energy_expected_uj")),
    }


def scan_cascades(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """Cascade results (`cascade.json` of tasks/cascade.py) under a sweep dir, as jobs of kind
    `cascade` (see `_cascade_point` for their numbers). Unreadable files are skipped with a
    warning."""
    sweep_dir = Path(sweep_dir).resolve()
    jobs = []
    for depth in range(MAX_CASCADE_DEPTH + 1):
        for path in sorted(sweep_dir.glob("/".join(["*"] * depth + ["cascade.json"]))):
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                job: dict[str, Any] = {key: math.nan for key in NUMBER_KEYS}
                job.update(_cascade_point(raw, path))
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
                log.warning("skipping unreadable cascade result %s: %s", path, err)
                continue
            job.update({key: None for key in TEXT_KEYS}, kind="cascade", job_dir=str(path.parent))
            job["label"] = str(raw.get("label") or path.parent.name)
            job["missing"] = [k for k in REQUIRED_FOR_FRONTS if not math.isfinite(job[k])]
            jobs.append(job)
    return jobs


def collect_jobs(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The finished jobs of a sweep dir (see `scan_sweep`); skipped ones are logged."""
    scan = scan_sweep(sweep_dir)
    for job_dir, reason in scan.skipped:
        log.info("skipped %s (%s)", job_dir, reason)
    return scan.jobs


def disambiguate_labels(jobs: list[dict[str, Any]]) -> None:
    """Make labels unique in place by appending the fields that differ between namesakes."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        groups[job["label"]].append(job)
    for label, group in groups.items():
        if len(group) < 2:
            continue
        varying = [
            key
            for key in ("reg", "model", "dataset", "seed")
            if len({str(job.get(key)) for job in group}) > 1
        ]
        for job in group:
            parts = [f"{key}={_short(job.get(key))}" for key in varying]
            job["label"] = f"{label} ({', '.join(parts)})" if parts else label
        if len({job["label"] for job in group}) < len(group):
            for job in group:
                job["label"] = f"{job['label']} [{Path(job['job_dir']).name}]"


def _short(value: Any) -> str:
    """A compact text form of a label field (integral floats without `.0`)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)
