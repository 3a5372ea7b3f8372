# SPDX-License-Identifier: Apache-2.0
"""PNG plots of the cascade: accuracy-vs-cost curves and the pair complementarity heat map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from odimo.cascade.curve import Curve


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_curves(
    curves: Mapping[str, Curve],
    singles: Mapping[str, tuple[float, float]],
    chosen: Mapping[str, tuple[float, float]],
    path: str | Path,
    title: str = "",
) -> Path:
    """Accuracy (%) vs expected energy (µJ) of each curve, the single networks as squares and
    the chosen thresholds as rings; a second panel shows the share sent to big vs threshold.

    Args:
        curves: label (e.g. `val`, `test`) -> curve.
        singles: network label -> (energy µJ, accuracy) of that network alone.
        chosen: label -> (energy µJ, accuracy) of a chosen point.
    """
    fig = _figure(11.0, 4.5)
    ax, ax2 = fig.subplots(1, 2)
    for label, curve in curves.items():
        ax.plot(curve.energy_uj, 100 * curve.acc, lw=1.2, label=f"cascade ({label})")
        ax2.plot(curve.thresholds, 100 * curve.p_big, lw=1.2, label=label)
    for label, (energy, acc) in singles.items():
        ax.scatter(energy, 100 * acc, marker="s", s=50, edgecolors="black", zorder=4)
        ax.annotate(
            label, (energy, 100 * acc), fontsize=7, xytext=(5, -10), textcoords="offset points"
        )
    for label, (energy, acc) in chosen.items():
        ax.scatter(
            energy,
            100 * acc,
            s=140,
            facecolors="none",
            edgecolors="tab:red",
            linewidths=1.6,
            zorder=5,
        )
        ax.annotate(
            label,
            (energy, 100 * acc),
            fontsize=7,
            xytext=(6, 6),
            textcoords="offset points",
            color="tab:red",
        )
    ax.set_xlabel("expected energy per input (µJ)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax2.set_xlabel("threshold")
    ax2.set_ylabel("inputs sent to big (%)")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_heatmaps(
    matrices: Mapping[str, np.ndarray], names: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """One annotated heat map (in %) per matrix, side by side, networks on both axes."""
    fig = _figure(5.5 * len(matrices), 5.0)
    axes = np.atleast_1d(fig.subplots(1, len(matrices)))
    for ax, (label, matrix) in zip(axes, matrices.items(), strict=True):
        image = ax.imshow(100 * matrix, cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for (i, j), value in np.ndenumerate(100 * matrix):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=6, color="white")
        ax.set_title(f"{label} (%)", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
