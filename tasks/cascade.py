# SPDX-License-Identifier: Apache-2.0
"""A big/little cascade of two networks: `python tasks/cascade.py little=<run> big=<run>
score=margin postcheck=false memory=none output_dir=<dir>`."""

import sys
from pathlib import Path

# Runs from a plain checkout too: put the repo root (parent of tasks/) on the import path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odimo.cli import run_entry
from odimo.tasks.cascade import run

if __name__ == "__main__":
    run_entry("cascade", run)
