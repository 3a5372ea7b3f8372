# SPDX-License-Identifier: Apache-2.0
"""odimo main job: `python train.py [overrides]` (see conf/train.yaml and README.md)."""

from odimo.cli import run_entry
from odimo.tasks.train import run

if __name__ == "__main__":
    run_entry("train", run)
