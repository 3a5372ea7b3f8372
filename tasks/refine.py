# SPDX-License-Identifier: Apache-2.0
"""Front refinement: `python tasks/refine.py sweep_dir=<dir> n=<k> [run=true]`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odimo.cli import run_entry  # noqa: E402
from odimo.tasks.refine import run  # noqa: E402

if __name__ == "__main__":
    run_entry("refine", run)
