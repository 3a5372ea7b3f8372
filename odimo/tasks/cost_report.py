# SPDX-License-Identifier: Apache-2.0
"""Cost report task: per-layer cycles and totals of a model + mapping, without training."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from odimo.hw import get_platform, record_geometry
from odimo.io import atomic_write_text
from odimo.models import build_model, model_spec, searchable_names
from odimo.nn.baselines import baseline_mapping, baseline_names
from odimo.nn.mapping import Mapping
from odimo.nn.report import cost_report, format_report


def resolve_mapping(choice: str, geometry, platform, searchable) -> tuple[Mapping, str]:
    """A baseline name or a mapping JSON path -> (mapping, label)."""
    if choice in platform.baselines():
        return baseline_mapping(choice, geometry, platform, searchable), choice
    if not choice.endswith(".json") and not Path(choice).exists():
        from odimo.errors import MappingError

        raise MappingError(
            f"unknown mapping {choice!r}: give a baseline "
            f"({', '.join(baseline_names(platform))}) or the path of a mapping JSON"
        )
    return Mapping.load(choice), str(choice)


def run(cfg: DictConfig) -> dict:
    """Build the model at the dataset's input size, resolve the mapping, report its costs."""
    platform = get_platform(cfg.platform)
    spec = model_spec(cfg.model, cfg.dataset.input_size, cfg.dataset.num_classes)
    model = build_model(spec, "float")
    geometry = record_geometry(model, spec.input_size)
    mapping, label = resolve_mapping(str(cfg.mapping), geometry, platform, searchable_names(model))
    report = cost_report(
        geometry,
        mapping,
        platform,
        model=spec.label,
        dataset=cfg.dataset.name,
        input_size=spec.input_size,
        mapping_label=label,
    )
    print(format_report(report, platform.unit_names))
    if cfg.output:
        atomic_write_text(cfg.output, json.dumps(report, indent=1) + "\n")
        print(f"wrote {cfg.output}")
    return report
