# SPDX-License-Identifier: Apache-2.0
"""Cost report: `python tasks/cost_report.py model=res20 mapping=io_digital`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odimo.cli import run_entry  # noqa: E402
from odimo.tasks.cost_report import run  # noqa: E402

if __name__ == "__main__":
    run_entry("cost_report", run)
