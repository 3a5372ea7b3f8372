# SPDX-License-Identifier: Apache-2.0
"""Atomic writes: a reader sees the old file or the new one, never a torn one.

Each write goes to a unique temp file in the target's folder, is flushed and fsync'ed, then
renamed over the target. A full disk raises `DiskFullError` (one line) and leaves the old file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from odimo.errors import OdimoError


class DiskFullError(OdimoError):
    """A write failed because the file system is full (or over quota)."""


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


def remove_stale_temps(folder: Path) -> int:
    """Delete temp files left in `folder` by killed writers (never read); returns the count."""
    count = 0
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            count += 1
    return count
