# SPDX-License-Identifier: Apache-2.0
"""Pareto fronts of a finished sweep: `python tasks/pareto.py sweep_dir=<dir> [k=5 ...]`."""

import sys
from pathlib import Path

# Runs from a plain checkout too: put the repo root (parent of tasks/) on the import path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odimo.cli import run_entry
from odimo.tasks.pareto import run

if __name__ == "__main__":
    run_entry("pareto", run)
