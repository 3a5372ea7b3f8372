# SPDX-License-Identifier: Apache-2.0
"""Inter-process file locks (`filelock`, released by the OS when the holder dies), so two
launches of one job, or two jobs needing one cache entry, never write into one folder at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from odimo.errors import OdimoError


class JobBusyError(OdimoError):
    """Another process holds the lock of this job (it is running it now)."""


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
