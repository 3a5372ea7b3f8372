# SPDX-License-Identifier: Apache-2.0
"""Ranks under DDP: only global rank 0 writes files; every rank must agree on a decision."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from odimo.errors import OdimoError
from odimo.io.atomic import atomic_write_text


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


def rank_zero_write(path: str | Path, text: str) -> None:
    """`atomic_write_text` on global rank 0; nothing on the other ranks."""
    if is_rank_zero():
        atomic_write_text(path, text)
