# SPDX-License-Identifier: Apache-2.0
"""Task functions `run(cfg)` behind the entry points (`train.py`, `tasks/*.py`)."""
