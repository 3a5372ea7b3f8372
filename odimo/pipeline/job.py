# SPDX-License-Identifier: Apache-2.0
"""A job folder's "already done": its config fingerprint, DONE and FAILED markers, force=true.

A job folder records the fingerprint of the config that made it (`fingerprint.json`, written
with `odimo.io.config_fingerprint`); a finished job (DONE + metrics.json) of the same config is
not run again, one of another config is refused with the keys that differ.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import traceback
from pathlib import Path

from omegaconf import DictConfig

from odimo.errors import ConfigError, OdimoError
from odimo.io import atomic_write_text, changed_keys, config_fingerprint, result_config

#: Longest job folder name (bytes); file systems refuse names over 255.
MAX_JOB_DIR_BYTES = 200


def job_dir_name(overrides: str) -> str:
    """A sweep job's folder name: its overrides, or, when they would make a name too long for
    the file system, their first bytes + `~` + a hash of the whole (still one folder per job,
    the same on every re-run)."""
    raw = overrides.encode()
    if len(raw) <= MAX_JOB_DIR_BYTES:
        return overrides
    digest = hashlib.sha256(raw).hexdigest()[:16]
    head = raw[: MAX_JOB_DIR_BYTES - len(digest) - 1].decode(errors="ignore")
    return f"{head}~{digest}"


def write_failed(path: Path) -> None:
    """FAILED with the current traceback (best effort: the disk may be full)."""
    with contextlib.suppress(OSError, OdimoError):
        atomic_write_text(path, traceback.format_exc())


def previous_result(cfg: DictConfig, run_dir: Path) -> dict | None:
    """The stored metrics of a finished job with this config; None if the job must run.

    Records the config's fingerprint (`fingerprint.json`) before a job starts; a folder holding
    another config's job raises ConfigError, or is cleared when `force=true`.
    """
    fingerprint, tree = config_fingerprint(cfg), result_config(cfg)
    record = run_dir / "fingerprint.json"
    if record.is_file():
        old = json.loads(record.read_text())
        if old.get("fingerprint") != fingerprint and not cfg.get("force", False):
            keys = ", ".join(changed_keys(old.get("config", {}), tree)[:6]) or "?"
            raise ConfigError(
                f"{run_dir} holds a job of another config (changed: {keys}); use another "
                "sweep_name or run dir, or force=true to delete it and run again"
            )
    if cfg.get("force", False):
        clear_job(run_dir)
    elif (run_dir / "DONE").is_file() and (run_dir / "metrics.json").is_file():
        print(f"{run_dir} is done already; skipping (force=true runs it again)")
        return json.loads((run_dir / "metrics.json").read_text())
    atomic_write_text(record, json.dumps({"fingerprint": fingerprint, "config": tree}) + "\n")
    return None


def clear_job(run_dir: Path) -> None:
    """Delete a job's outputs (`force=true`); Hydra's `.hydra/`, logs and the lock stay."""
    keep = {".hydra", ".lock"}
    for item in run_dir.iterdir():
        if item.name in keep or item.suffix == ".log":
            continue
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()
    print(f"{run_dir}: force=true, previous outputs deleted")
