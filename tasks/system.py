# SPDX-License-Identifier: Apache-2.0
"""A pool of networks, every (little, big) cascade ranked, the little networks worth training:
`python tasks/system.py pool=[<sweep>,<run>] output_dir=<dir> little.catalogue=<catalogue.csv>`."""

import sys
from pathlib import Path

# Runs from a plain checkout too: put the repo root (parent of tasks/) on the import path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odimo.cli import run_entry
from odimo.tasks.system import run

if __name__ == "__main__":
    run_entry("system", run)
