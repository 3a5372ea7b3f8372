# SPDX-License-Identifier: Apache-2.0
"""Task functions `run(cfg)` behind the entry points (`train.py`, `tasks/*.py`)."""

import hashlib

from omegaconf import OmegaConf

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


# conf/hydra/default.yaml names job folders with it; registered wherever a task is imported
# (the launcher's process and submitit's job processes alike)
OmegaConf.register_new_resolver("job_dir_name", job_dir_name, replace=True)
