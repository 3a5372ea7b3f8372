# SPDX-License-Identifier: Apache-2.0
"""Characterize sampled networks (no training): `python tasks/characterize.py space=probe
law=s1 ids=0:100 platforms=[host_cpu,diana] output_dir=outputs/catalogue`."""

import sys
from pathlib import Path

# Runs from a plain checkout too: put the repo root (parent of tasks/) on the import path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odimo.cli import run_entry
from odimo.tasks.characterize import run

if __name__ == "__main__":
    run_entry("characterize", run)
