# SPDX-License-Identifier: Apache-2.0
"""Convert torchvision networks and print what came out: time, layers, the baselines' costs."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig

from odimo.convert.measure import format_rows, measure_arch
from odimo.errors import ConfigError
from odimo.hw import get_platform


def run(cfg: DictConfig) -> list[dict]:
    """One row per (arch, size); the Markdown table on stdout, the rows as JSON in `output`."""
    platform = get_platform(str(cfg.platform))
    sizes = [int(s) for s in cfg.sizes]
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"sizes must be positive image sizes in pixels, got {sizes}")
    rows = []
    for arch in cfg.archs:
        for size in sizes:
            size3 = (int(cfg.channels), size, size)
            rows.append(measure_arch(str(arch), size3, int(cfg.num_classes), platform))
            print(f"{arch} {size}x{size}: {rows[-1].convert_s:.2f} s", flush=True)
    print(format_rows(rows))
    data = [asdict(r) for r in rows]
    if cfg.output:
        Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.output).write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {cfg.output}")
    return data
