# SPDX-License-Identifier: Apache-2.0
"""Tables and pictures for the experiment trackers of a Trainer (W&B), besides the files.

Every table and picture is written as a file in the run dir first; these helpers also hand it
to each logger of the trainer that takes media (Lightning's `WandbLogger`: `log_table`,
`log_image`). With the CSV logger alone they do nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as L

from odimo.nn.mapping import Mapping


def media_loggers(trainer: L.Trainer) -> list:
    """The trainer's loggers that take tables and images."""
    return [
        lg
        for lg in trainer.loggers
        if callable(getattr(lg, "log_table", None)) and callable(getattr(lg, "log_image", None))
    ]


def log_table(trainer: L.Trainer, key: str, columns: Sequence[str], rows: Sequence[Sequence]):
    """Send a table (one list per row) to every media logger."""
    for lg in media_loggers(trainer):
        lg.log_table(key=key, columns=list(columns), data=[list(r) for r in rows])


def log_image(trainer: L.Trainer, key: str, path: Path | None) -> None:
    """Send a PNG already written to `path` to every media logger (nothing if None)."""
    if path is None:
        return
    for lg in media_loggers(trainer):
        lg.log_image(key=key, images=[str(path)])


def mapping_rows(mapping: Mapping) -> tuple[list[str], list[list]]:
    """Columns and rows of a per-layer mapping table: layer, output channels, channels per unit."""
    columns = ["layer", "c_out", *mapping.units]
    rows = [[name, len(a), *mapping.counts(name)] for name, a in mapping.layers.items()]
    return columns, rows


def plot_mapping(mapping: Mapping, path: Path) -> Path:
    """Stacked bar chart of every unit's channels per layer."""
    from odimo.analysis.plots import plot_mapping_bars

    bars = [(name, *mapping.counts(name)) for name in mapping.layers]
    return plot_mapping_bars(bars, path, units=mapping.units)
