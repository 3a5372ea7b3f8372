# SPDX-License-Identifier: Apache-2.0
"""CSV and JSON outputs written atomically, with one rule for missing values.

Every table odimo writes (Pareto fronts, budgets, cascade curves, rankings, catalogues) goes
through `write_csv`/`write_records_csv`, every JSON report through `write_json`: a reader never
sees a half-written file, NaN becomes an empty cell (CSV) or null (strict JSON), booleans read
`true`/`false` in CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from odimo.io.atomic import atomic_write_text


def csv_cell(value: Any) -> Any:
    """A CSV cell: empty for None/NaN/inf, lower-case booleans, anything else as it is."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def json_safe(value: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_csv(path: str | Path, header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a header and rows (cells as given) to `path` atomically; returns the path."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
    return Path(path)


def write_records_csv(
    path: str | Path,
    columns: Sequence[str],
    records: Iterable[dict[str, Any]],
    cell: Callable[[Any], Any] = csv_cell,
) -> Path:
    """One row per record, the given columns in order (a missing key is an empty cell)."""
    return write_csv(path, columns, ([cell(r.get(c)) for c in columns] for r in records))


def write_json(path: str | Path, data: Any, indent: int = 1, ensure_ascii: bool = True) -> Path:
    """`data` as strict JSON (NaN -> null) plus a newline, written atomically."""
    text = json.dumps(json_safe(data), indent=indent, ensure_ascii=ensure_ascii, allow_nan=False)
    atomic_write_text(path, text + "\n")
    return Path(path)
