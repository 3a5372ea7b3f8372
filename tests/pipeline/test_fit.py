# SPDX-License-Identifier: Apache-2.0
"""Phase plumbing: which checkpoint a phase resumes from, and which it refuses."""

from __future__ import annotations

import pytest

from odimo.io import atomic_torch_save
from odimo.pipeline.fit import checkpoint_problem, resume_checkpoint


def test_corrupt_checkpoints_are_set_aside_in_order(tmp_path, capsys):
    good = {"state_dict": {}, "loops": {}, "odimo": {"fingerprint": "fp"}}
    atomic_torch_save(good, tmp_path / "best.ckpt")
    (tmp_path / "last.ckpt").write_bytes(b"PK\x03\x04 torn")
    with pytest.warns(RuntimeWarning, match="last.ckpt is unreadable"):
        assert resume_checkpoint(tmp_path, "fp", "finetune") == str(tmp_path / "best.ckpt")
    assert (tmp_path / "last.corrupt").is_file() and not (tmp_path / "last.ckpt").exists()
    (tmp_path / "best.ckpt").write_bytes(b"")
    with pytest.warns(RuntimeWarning):
        assert resume_checkpoint(tmp_path, "fp", "finetune") is None  # restart from scratch
    # a checkpoint of another config is refused, not silently resumed
    atomic_torch_save({**good, "odimo": {"fingerprint": "other"}}, tmp_path / "last.ckpt")
    with pytest.raises(Exception, match="written by another config"):
        checkpoint_problem(tmp_path / "last.ckpt", "fp")
