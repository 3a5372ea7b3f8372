# SPDX-License-Identifier: Apache-2.0
"""Chip evaluation: `python tasks/chip_eval.py run_dir=<finished run> [sigmas=[0,1]]`."""

import sys
from pathlib import Path

# Runs from a plain checkout too: put the repo root (parent of tasks/) on the import path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odimo.cli import run_entry  # noqa: E402
from odimo.tasks.chip_eval import run  # noqa: E402

if __name__ == "__main__":
    run_entry("chip_eval", run)
