# SPDX-License-Identifier: Apache-2.0
"""Converted torchvision networks: `python tasks/convert.py archs=[resnet18] sizes=[32,64]`."""

import sys
from pathlib import Path

# Runs from a plain checkout too: put the repo root (parent of tasks/) on the import path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from odimo.cli import run_entry  # noqa: E402
from odimo.tasks.convert import run  # noqa: E402

if __name__ == "__main__":
    run_entry("convert", run)
