# SPDX-License-Identifier: Apache-2.0
"""Characterise converted networks: conversion time, searchable layers, the baselines' costs."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from odimo.convert.sources import torchvision_model
from odimo.hw.geometry import record_geometry
from odimo.hw.platform import Platform
from odimo.nn.baselines import baseline_mapping, baseline_names
from odimo.nn.conv import SearchConv2d
from odimo.nn.factory import make_ops
from odimo.nn.report import cost_report


@dataclass(frozen=True)
class ArchRow:
    """One network at one input size: conversion time, layers, baseline costs (ms, µJ)."""

    arch: str
    input_size: tuple[int, int, int]
    convert_s: float
    layers: int
    searchable: int
    rectified: int
    baselines: dict[str, tuple[float, float]]


def measure_arch(
    arch: str,
    input_size: tuple[int, int, int],
    num_classes: int,
    platform: Platform,
    substitute: str | None = None,
) -> ArchRow:
    """Convert one torchvision network to all three forms and cost the five baselines.

    `convert_s` is the CPU time (one thread; robust on a shared machine) of building the three
    forms from the torchvision name: torchvision's initialisation of the float source, tracing,
    shape propagation and the new graphs (the quantized forms build their source on the meta
    device, so they skip the initialisation; the mapped form is built first, so a network the
    converter refuses is refused before the float initialisation).
    """
    torch.manual_seed(0)
    start = time.process_time()
    options = {"arch": arch, "substitute_activations": substitute}
    mapped = torchvision_model(make_ops("mapped", platform), input_size, num_classes, **options)
    search = torchvision_model(make_ops("search", platform), input_size, num_classes, **options)
    float_model = torchvision_model(make_ops("float", None), input_size, num_classes, **options)
    seconds = time.process_time() - start
    geometry = record_geometry(mapped, input_size)
    searchable = sum(isinstance(m, SearchConv2d) for m in search.modules())
    free = [n for n, m in search.named_modules() if isinstance(m, SearchConv2d)]
    costs = {}
    for name in baseline_names(platform):
        mapping = baseline_mapping(name, geometry, platform, free)
        report = cost_report(
            geometry,
            mapping,
            platform,
            model=arch,
            dataset="-",
            input_size=input_size,
            mapping_label=name,
        )
        costs[name] = (report["latency_ms"], report["energy_uj"])
    del float_model
    return ArchRow(
        arch,
        tuple(input_size),
        seconds,
        len(geometry),
        searchable,
        len(search.conversion.rectified),
        costs,
    )


def format_rows(rows: list[ArchRow]) -> str:
    """A Markdown table: one row per network and size, latency ms / energy µJ per baseline."""
    names = list(rows[0].baselines) if rows else []
    head = (
        "| arch | input | convert CPU s | layers | searchable | "
        + " | ".join(f"{n} ms / µJ" for n in names)
        + " |"
    )
    lines = [head, "|" + "---|" * (5 + len(names))]
    for r in rows:
        cells = " | ".join(f"{r.baselines[n][0]:.3f} / {r.baselines[n][1]:.2f}" for n in names)
        size = f"{r.input_size[1]}×{r.input_size[2]}"
        lines.append(
            f"| {r.arch} | {size} | {r.convert_s:.2f} | {r.layers} | {r.searchable} | {cells} |"
        )
    return "\n".join(lines)
