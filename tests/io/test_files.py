# SPDX-License-Identifier: Apache-2.0
"""Safe files: atomic writes under SIGKILL and a full disk, fingerprints, locks."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from odimo.io import (
    DiskFullError,
    atomic_torch_save,
    atomic_write_text,
    changed_keys,
    config_fingerprint,
    job_lock,
    result_config,
)
from odimo.io import atomic as files
from odimo.pipeline.fit import resume_checkpoint
from tests.tasks.helpers import REPO, train_cfg


def test_sigkill_during_a_checkpoint_write_leaves_the_old_file(tmp_path):
    """A writer killed after writing half of the new file: the target is still the old one,
    readable, and the next resume removes the temp file and reads the old checkpoint."""
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.zeros(3)}, "loops": {}}, target)
    old = target.read_bytes()
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        from odimo.io import atomic as files
        real_save = torch.save
        def half_then_die(obj, path):
            real_save(obj, path)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        files.torch.save = half_then_die
        files.atomic_torch_save({{"state_dict": {{"w": torch.ones(10**6)}}, "loops": {{}}}},
                                {str(target)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env={**os.environ})
    assert proc.returncode == -9  # killed by SIGKILL mid-write
    assert target.read_bytes() == old
    temps = list(tmp_path.glob(".last.ckpt.*.tmp"))
    assert len(temps) == 1 and temps[0].stat().st_size > 0  # the torn temp file
    assert resume_checkpoint(tmp_path, "fp", "search") == str(target)
    assert not list(tmp_path.glob("*.tmp"))  # removed, never read


def test_a_full_disk_is_one_clear_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old\n")

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.Path, "write_bytes", full)
    with pytest.raises(DiskFullError, match="no space left on the device writing .*metrics.json"):
        atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_fingerprint_ignores_paths_and_progress_but_not_results(tmp_path):
    base = train_cfg(tmp_path, "strength=1e-5")
    same = train_cfg(
        tmp_path / "elsewhere", "strength=1e-5", "callbacks.progress=tqdm", "threads=1"
    )
    other = train_cfg(tmp_path, "strength=1e-4", "search.epochs=3")
    assert config_fingerprint(base) == config_fingerprint(same)
    assert config_fingerprint(base) != config_fingerprint(other)
    assert len(config_fingerprint(base)) == 16
    assert changed_keys(result_config(base), result_config(other)) == [
        "search.epochs",
        "strength",
    ]


def test_threads_key_sets_the_intra_op_threads_and_bad_values_are_refused(tmp_path):
    from odimo.errors import ConfigError
    from odimo.tasks.train import run

    with pytest.raises(ConfigError, match="threads must be an integer >= 1 or null, got 0"):
        run(train_cfg(tmp_path, "threads=0"))
    before = torch.get_num_threads()
    try:
        run(train_cfg(tmp_path, "threads=1", "phases=[warmup]", "warmup.epochs=1"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_job_lock_makes_a_second_process_wait(tmp_path):
    """While one process holds a job's lock, another waits for it (then finds its result)."""
    script = textwrap.dedent(
        f"""
        import time, pathlib
        from odimo.io import job_lock
        with job_lock(pathlib.Path({str(tmp_path)!r})):
            print("locked", flush=True)
            time.sleep(2)
            (pathlib.Path({str(tmp_path)!r}) / "DONE").write_text("x")
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    start = time.perf_counter()
    with job_lock(tmp_path) as waited:
        assert waited and (tmp_path / "DONE").is_file()
    assert time.perf_counter() - start > 0.5
    holder.wait(timeout=600)
