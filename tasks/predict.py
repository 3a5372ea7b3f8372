# SPDX-License-Identifier: Apache-2.0
"""Cache a classifier's logits for the cascade: `python tasks/predict.py run_dir=<run>`."""

import sys
from pathlib import Path

# Runs from a plain checkout too: put the repo root (parent of tasks/) on the import path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odimo.cli import run_entry
from odimo.tasks.predict import run

if __name__ == "__main__":
    run_entry("predict", run)
