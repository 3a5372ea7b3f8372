# SPDX-License-Identifier: Apache-2.0
"""Safe files for jobs that run at the same time, die, or are re-run.

- `atomic_write_text` / `atomic_torch_save`: a unique temp file in the target's folder, flushed
  and fsync'ed, then renamed over the target. Readers see the old file or the new one, never a
  torn one; a full disk raises `DiskFullError` (one line) and leaves the old file in place.
- `is_rank_zero` / `rank_zero_write`: under DDP only global rank 0 writes files.
- `config_fingerprint`: a hash of everything in the config that changes a job's results.
- `job_lock` / `cache_lock`: inter-process file locks (`filelock`, released by the OS when the
  holding process dies), so two launches of one job, or two jobs needing one warm-up, never
  train into the same folder at once.
- `same_on_all_ranks`: checks that every DDP rank holds the same value (e.g. the mapping).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from odimo.errors import OdimoError

#: Config keys that do not change a job's results (dotted paths), left out of its fingerprint.
NON_RESULT_KEYS = (
    "paths",
    "logger",
    "hydra",
    "sweep_name",
    "force",
    "compile",
    "threads",
    "fused_quant",
    "callbacks.progress",
    "dataset.datamodule.num_workers",
)


class DiskFullError(OdimoError):
    """A write failed because the file system is full (or over quota)."""


class JobBusyError(OdimoError):
    """Another process holds the lock of this job (it is running it now)."""


# ---------------------------------------------------------------------------------------------
# ranks


def global_rank() -> int:
    """This process's global rank: 0 without DDP (Lightning's view, set from the environment)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    rank = getattr(rank_zero_only, "rank", None)
    if rank is None:
        rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))
    return int(rank)


def is_rank_zero() -> bool:
    """True in the process that writes files (global rank 0)."""
    return global_rank() == 0


def same_on_all_ranks(value: Any, what: str) -> None:
    """Raise if the DDP ranks disagree on a JSON-able value (a no-op without a process group)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if torch.distributed.get_world_size() < 2:
        return
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, digest)
    if len(set(gathered)) != 1:
        raise OdimoError(f"the DDP ranks disagree on the {what} (hashes {sorted(set(gathered))})")


# ---------------------------------------------------------------------------------------------
# atomic writes


def _disk_full(path: Path, err: OSError) -> DiskFullError:
    return DiskFullError(
        f"no space left on the device writing {path} ({err.strerror}): free space and run the "
        "same command again; finished phases and jobs are kept"
    )


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_name(path: Path) -> Path:
    """A temp file next to `path`, unique to this process and call (never shared by two jobs)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it is fsync'ed and renamed to `path`.

    On any error the temp file is removed and `path` is untouched; ENOSPC/EDQUOT become
    `DiskFullError`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(path, err) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save` to `path` atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def rank_zero_write(path: str | Path, text: str) -> None:
    """`atomic_write_text` on global rank 0; nothing on the other ranks."""
    if is_rank_zero():
        atomic_write_text(path, text)


def remove_stale_temps(folder: Path) -> int:
    """Delete temp files left in `folder` by killed writers (never read); returns the count."""
    count = 0
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            count += 1
    return count


# ---------------------------------------------------------------------------------------------
# fingerprints


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.get(key)
        if not isinstance(tree, dict):
            return
    tree.pop(leaf, None)


def result_config(cfg: DictConfig) -> dict:
    """The resolved config without the keys that do not change results (`NON_RESULT_KEYS`)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in NON_RESULT_KEYS:
        _drop(tree, key)
    return tree


def config_fingerprint(cfg: DictConfig | dict) -> str:
    """sha256 (16 hex digits) of `result_config(cfg)`: equal configs, equal fingerprints."""
    tree = cfg if isinstance(cfg, dict) else result_config(cfg)
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (for one-line messages)."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b, name = old.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, name + ".")
        elif a != b:
            out.append(name)
    return out


# ---------------------------------------------------------------------------------------------
# locks


def _lock(path: Path):
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


@contextlib.contextmanager
def cache_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold the lock of a cache entry (waiting, with a message, while another job holds it)."""
    from filelock import Timeout

    lock = _lock(folder / ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"[{what}] another job is computing {folder}; waiting for it")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def job_lock(run_dir: Path) -> Iterator[bool]:
    """Hold the lock of a job folder; yields True if another process held it first (we waited).

    A second launch of a running job (two identical sweep commands, a relaunch after a killed
    launcher) waits for the first one and then finds its DONE marker.
    """
    from filelock import Timeout

    lock = _lock(run_dir / ".lock")
    waited = False
    try:
        lock.acquire(timeout=0)
    except Timeout:
        waited = True
        print(f"{run_dir} is being run by another process; waiting for it")
        lock.acquire()
    try:
        yield waited
    finally:
        lock.release()
