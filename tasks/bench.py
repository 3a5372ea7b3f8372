# SPDX-License-Identifier: Apache-2.0
"""Speed benchmark: `python tasks/bench.py model=res20 batch=128 device=cpu steps=20`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odimo.cli import run_entry  # noqa: E402
from odimo.tasks.bench import run  # noqa: E402

if __name__ == "__main__":
    run_entry("bench", run)
