# SPDX-License-Identifier: Apache-2.0
"""Convert torchvision networks and print what came out: time, layers, the baselines' costs."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig

from odimo.convert.measure import format_rows, measure_arch
from odimo.convert.zoo import format_zoo, zoo_table
from odimo.errors import ConfigError
from odimo.hw import get_platform
from odimo.io import atomic_write_text


def run(cfg: DictConfig) -> list[dict]:
    """One row per (arch, size); the Markdown table on stdout, the rows as JSON in `output`.

    `all_cnns=true`: one row per CNN classifier of torchvision instead (`odimo.convert.zoo`)."""
    platform = get_platform(cfg.platform)
    if cfg.all_cnns:
        zoo = cfg.zoo
        rows = zoo_table(
            tuple(zoo.sizes), int(cfg.num_classes), platform, zoo.timeout_s, zoo.max_params_m
        )
        print(format_zoo(rows))
        return _write(cfg, [asdict(r) for r in rows])
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
    return _write(cfg, [asdict(r) for r in rows])


def _write(cfg: DictConfig, data: list[dict]) -> list[dict]:
    if cfg.output:
        atomic_write_text(Path(cfg.output), json.dumps(data, indent=1) + "\n")
        print(f"wrote {cfg.output}")
    return data
