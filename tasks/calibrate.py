# SPDX-License-Identifier: Apache-2.0
"""Calibrate a platform: `python tasks/calibrate.py measurements=<csv>
platform=diana name=diana_cal [install=true]`."""

import sys
from pathlib import Path

# Runs from a plain checkout too: put the repo root (parent of tasks/) on the import path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odimo.cli import run_entry
from odimo.tasks.calibrate import run

if __name__ == "__main__":
    run_entry("calibrate", run)
