# SPDX-License-Identifier: Apache-2.0
"""PNG plots: the accuracy-vs-cost front of a sweep, and a run's channel mapping.

Figures are built with the object API on the Agg canvas (no pyplot state, no display needed), so
the functions are safe in worker processes and tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

#: One marker shape per known baseline; unknown baselines take the spare shapes in turn.
BASELINE_MARKERS = {
    "all_digital": "s",
    "all_analog": "^",
    "io_digital": "D",
    "min_latency": "v",
    "min_latency_max8": "P",
}
SPARE_MARKERS = ("X", "*", "h", "<", ">", "p")
SEARCH_COLOR = "tab:blue"
TEST_COLOR = "tab:gray"
FRONT_COLOR = "tab:red"
BASELINE_COLOR = "tab:green"
CASCADE_COLOR = "tab:orange"


def _new_figure(width: float, height: float) -> Figure:
    """A figure attached to an Agg canvas."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finite(value: Any) -> bool:
    """True for a finite number."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def _draw_front(ax, rows, cost_key: str, acc_key: str, front_key, selected_key) -> None:
    """The front as a step line over `acc_key` and rings around the selected rows."""
    acc_name = acc_key.split("_", 1)[0]
    front = sorted((r for r in rows if front_key and r.get(front_key)), key=lambda r: r[cost_key])
    if front:
        ax.step(
            *_xy(front, cost_key, acc_key),
            where="post",
            color=FRONT_COLOR,
            lw=1.5,
            zorder=1,
            label=f"Pareto front ({acc_name})",
        )
    chosen = [r for r in rows if selected_key and r.get(selected_key)]
    if chosen:
        ax.scatter(
            *_xy(chosen, cost_key, acc_key),
            s=180,
            facecolors="none",
            edgecolors=FRONT_COLOR,
            linewidths=1.8,
            zorder=5,
            label="selected",
        )


def plot_front(
    rows: Sequence[Mapping[str, Any]],
    cost_key: str,
    cost_label: str,
    path: str | Path,
    *,
    front_key: str | None = None,
    selected_key: str | None = None,
    acc_key: str = "val_acc_hard",
    test_key: str | None = "test_acc_hard",
    title: str | None = None,
) -> Path:
    """Scatter of accuracy (%) vs cost (log x) for a sweep, with its front and selection.

    Search jobs are filled dots annotated with their label (λ), their `test_key` accuracy a hollow
    marker at the same cost; the front (rows flagged by `front_key`) is a step line over
    `acc_key`; rows flagged by `selected_key` are ringed; baselines get one labelled marker shape
    each. Rows whose cost or accuracy is not finite are left out.

    Args:
        rows: one mapping per job with `label`, `kind`, `baseline`, `cost_key`, `acc_key`, ...
        cost_key: row key of the cost on the x axis (must be > 0).
        cost_label: x-axis label, with unit.
        path: where to write the PNG.
        front_key: row key of the boolean front flag (no front line when None).
        selected_key: row key of the boolean "selected" flag (no rings when None).
        acc_key: row key of the accuracy that drives the front (validation).
        test_key: row key of the accuracy shown as hollow markers (None: not shown).
        title: figure title.

    Returns:
        The path written.
    """
    rows = [r for r in rows if _finite(r.get(cost_key)) and _finite(r.get(acc_key))]
    rows = [r for r in rows if r[cost_key] > 0]
    fig = _new_figure(8.0, 5.5)
    ax = fig.add_subplot()
    searched = [r for r in rows if r.get("kind") not in ("baseline", "cascade")]
    _draw_search(ax, searched, cost_key, acc_key, test_key)
    _draw_baselines(ax, [r for r in rows if r.get("kind") == "baseline"], cost_key, acc_key)
    _draw_cascades(ax, [r for r in rows if r.get("kind") == "cascade"], cost_key, acc_key)
    _draw_front(ax, rows, cost_key, acc_key, front_key, selected_key)
    ax.set_xscale("log")
    _plain_log_ticks(ax, [r[cost_key] for r in rows])
    ax.margins(x=0.08, y=0.06)
    ax.set_xlabel(cost_label)
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title)
    if rows:
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no finished job with finite values", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def plot_mapping_bars(
    layers: Sequence[Sequence] | Mapping[str, Sequence[int]],
    path: str | Path,
    title: str | None = None,
    units: Sequence[str] | None = None,
) -> Path:
    """Stacked bars of the output channels each layer maps to each unit.

    Args:
        layers: `(name, channels on unit 0, channels on unit 1, ...)` per layer in network
            order, or a mapping `name -> (channels per unit)`.
        path: where to write the PNG.
        title: figure title.
        units: the platform's unit names in index order (the legend); None: "unit 0", ...

    Returns:
        The path written.
    """
    items = [(n, *v) for n, v in layers.items()] if isinstance(layers, Mapping) else list(layers)
    names = [str(item[0]) for item in items]
    counts = np.array([list(item[1:]) for item in items], dtype=float).reshape(len(items), -1)
    units = list(units) if units is not None else [f"unit {u}" for u in range(counts.shape[1])]
    if counts.shape[1] != len(units):
        raise ValueError(f"{counts.shape[1]} channel counts per layer for units {list(units)}")
    fig = _new_figure(max(6.0, 0.35 * len(names) + 2.0), 4.5)
    ax = fig.add_subplot()
    pos = np.arange(len(names))
    bottom = np.zeros(len(names))
    for u, unit in enumerate(units):
        ax.bar(pos, counts[:, u], bottom=bottom, color=f"C{u}", label=str(unit))
        bottom += counts[:, u]
    ax.set_xticks(pos, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("output channels")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_unit_heatmap(
    epochs: Sequence[int],
    layer_names: Sequence[str],
    fractions: Sequence[Sequence[float]] | np.ndarray,
    path: str | Path,
    title: str | None = None,
    unit: str = "cheap unit",
) -> Path:
    """Heat-map of each searchable layer's channel fraction on one unit over the search epochs.

    Args:
        epochs: epoch number of each row of `fractions`.
        layer_names: name of each column of `fractions`.
        fractions: the unit's fraction in [0, 1], shape [len(epochs), len(layer_names)].
        path: where to write the PNG.
        title: figure title.
        unit: the unit's name (the colour bar's label).

    Returns:
        The path written.
    """
    data = np.asarray(fractions, dtype=float).reshape(len(epochs), len(layer_names))
    fig = _new_figure(max(5.0, 0.25 * len(epochs) + 3.0), max(3.0, 0.25 * len(layer_names) + 1.5))
    ax = fig.add_subplot()
    image = ax.imshow(
        data.T,
        aspect="auto",
        origin="upper",
        vmin=0.0,
        vmax=1.0,
        cmap="viridis",
        interpolation="nearest",
    )
    ax.set_yticks(np.arange(len(layer_names)), [str(n) for n in layer_names], fontsize=7)
    step = max(1, math.ceil(len(epochs) / 20))
    ticks = np.arange(0, len(epochs), step)
    ax.set_xticks(ticks, [str(epochs[i]) for i in ticks], fontsize=7)
    ax.set_xlabel("search epoch")
    fig.colorbar(image, ax=ax, label=f"{unit} fraction")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _xy(rows: Sequence[Mapping[str, Any]], cost_key: str, acc_key: str) -> tuple[list, list]:
    """Costs and accuracies in % of the rows."""
    return [r[cost_key] for r in rows], [100 * r[acc_key] for r in rows]


def _draw_search(
    ax: Any, rows: list[Mapping[str, Any]], cost_key: str, acc_key: str, test_key: str | None
) -> None:
    """Search jobs: filled dots labelled with λ, hollow markers for their test accuracy."""
    if not rows:
        return
    ax.scatter(
        *_xy(rows, cost_key, acc_key),
        color=SEARCH_COLOR,
        s=30,
        zorder=3,
        label=f"search ({acc_key.split('_', 1)[0]})",
    )
    for x, y, r in zip(*_xy(rows, cost_key, acc_key), rows):
        ax.annotate(
            r.get("label", ""),
            (x, y),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
            color=SEARCH_COLOR,
        )
    tests = [r for r in rows if test_key and _finite(r.get(test_key))]
    if tests:
        ax.scatter(
            *_xy(tests, cost_key, str(test_key)),
            facecolors="none",
            edgecolors=TEST_COLOR,
            s=30,
            zorder=2,
            label=f"search ({str(test_key).split('_', 1)[0]})",
        )


def _draw_baselines(ax: Any, rows: list[Mapping[str, Any]], cost_key: str, acc_key: str) -> None:
    """Baselines: one marker shape each, with the baseline's name next to it."""
    markers = dict(BASELINE_MARKERS)
    spare = iter(SPARE_MARKERS * 4)
    listed: set[str] = set()
    for r in rows:
        name = str(r.get("baseline") or r.get("label") or "baseline")
        marker = markers.get(name) or markers.setdefault(name, next(spare, "o"))
        label = f"_{name}" if name in listed else name  # "_..." labels stay out of the legend
        listed.add(name)
        point = (r[cost_key], 100 * r[acc_key])
        ax.scatter(
            *point,
            marker=marker,
            s=70,
            color=BASELINE_COLOR,
            edgecolors="black",
            zorder=4,
            label=label,
        )
        ax.annotate(
            name, point, fontsize=7, xytext=(5, -10), textcoords="offset points", color="darkgreen"
        )


def _draw_cascades(ax: Any, rows: list[Mapping[str, Any]], cost_key: str, acc_key: str) -> None:
    """Cascades of two networks (expected cost): orange diamonds with their labels."""
    if not rows:
        return
    ax.scatter(
        *_xy(rows, cost_key, acc_key),
        marker="d",
        s=45,
        color=CASCADE_COLOR,
        edgecolors="black",
        zorder=4,
        label="cascade (expected cost)",
    )
    for x, y, r in zip(*_xy(rows, cost_key, acc_key), rows, strict=True):
        ax.annotate(
            r.get("label", ""),
            (x, y),
            fontsize=6,
            xytext=(4, -9),
            textcoords="offset points",
            color=CASCADE_COLOR,
        )


def _plain_log_ticks(ax: Any, values: Sequence[float]) -> None:
    """Label a log x axis with plain numbers (0.3, 1, 20); minor ticks only over < 2 decades."""
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    narrow = bool(values) and math.log10(max(values) / min(values)) < 2
    ax.xaxis.set_minor_formatter(plain if narrow else NullFormatter())
    ax.tick_params(axis="x", which="minor", labelsize=7)


def _save(fig: Figure, path: str | Path) -> Path:
    """Write the figure as PNG, creating the parent dir."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
