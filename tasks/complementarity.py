# SPDX-License-Identifier: Apache-2.0
"""Complementarity of all finished runs of a sweep: `python tasks/complementarity.py
sweep_dir=<dir>` writes the pair matrices, heat maps and a (little, big) ranking."""

import sys
from pathlib import Path

# Runs from a plain checkout too: put the repo root (parent of tasks/) on the import path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odimo.cli import run_entry
from odimo.tasks.complementarity import run

if __name__ == "__main__":
    run_entry("complementarity", run)
