# SPDX-License-Identifier: Apache-2.0
"""The split network on disk without pickle: a state dict plus a JSON spec.

`split_model.pt` holds only tensors (`torch.load(..., weights_only=True)` reads it) and
`split_model.json` says how to rebuild the module around them::

    {"format": "odimo.split/1", "spec": {name, input_size, num_classes, options},
     "platform": <platform identity>, "mapping": <mapping JSON>,
     "activations": [{"names": [...], "clip": float, "scale_exp": int, "bits": int}, ...]}

The structure (channel orders, unit convs) follows from the model spec and the mapping; the
activation quantizers' constants are plain numbers, so they are listed in the JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from odimo.errors import CheckpointError
from odimo.hw import platform_identity, platform_of_record, with_analog
from odimo.hw.analog import analog_from_config
from odimo.hw.platform import Platform
from odimo.io import atomic_torch_save, atomic_write_text
from odimo.models.io import read_out_config
from odimo.nn.mapping import Mapping, apply_mapping, model_mapping
from odimo.nn.split import ExportActQuant

FORMAT = "odimo.split/1"
WEIGHTS, SPEC = "split_model.pt", "split_model.json"


def split_spec(split: nn.Module, mapped: nn.Module, platform: Platform) -> dict:
    """The JSON spec of a split model made from `mapped` by `split_model`."""
    groups: dict[int, dict] = {}
    for name, module in split.named_modules(remove_duplicate=False):
        if isinstance(module, ExportActQuant):
            entry = groups.setdefault(
                id(module),
                {"names": [], "clip": module.clip, "scale_exp": module.scale_exp},
            )
            entry["bits"] = module.bits
            entry["names"].append(name)
    return {
        "format": FORMAT,
        "spec": mapped.spec.to_json(),
        "platform": platform_identity(platform),
        "mapping": model_mapping(mapped, platform).to_json(),
        "analog": read_out_config(mapped),
        "activations": list(groups.values()),
    }


def save_split(folder: Path, split: nn.Module, mapped: nn.Module, platform: Platform) -> None:
    """Write `split_model.pt` (state dict) and `split_model.json` (spec) atomically."""
    spec = split_spec(split, mapped, platform)
    atomic_torch_save(
        {k: v.detach().cpu() for k, v in split.state_dict().items()}, folder / WEIGHTS
    )
    atomic_write_text(folder / SPEC, json.dumps(spec, indent=1) + "\n")


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def load_split(folder: str | Path) -> nn.Module:
    """Rebuild the split network saved by `save_split` (no pickle); eval mode, no gradients."""
    from odimo.export.channel_plan import split_model
    from odimo.models.build import ModelSpec, build_model

    folder = Path(folder)
    try:
        spec = json.loads((folder / SPEC).read_text())
        if spec.get("format") != FORMAT:
            raise ValueError(f"format is {spec.get('format')!r}, expected {FORMAT!r}")
        platform = with_analog(
            platform_of_record(spec["platform"]), analog_from_config(spec.get("analog"))
        )
        mapped = build_model(ModelSpec.from_json(spec["spec"]), "mapped", platform)
        apply_mapping(mapped, Mapping.from_json(spec["mapping"], source=str(folder / SPEC)))
        split = split_model(mapped, platform)
        for group in spec["activations"]:
            act = ExportActQuant(group["clip"], group["scale_exp"], group["bits"])
            for name in group["names"]:
                _set(split, name, act)
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
        split.load_state_dict(state, strict=True)
    except Exception as err:  # noqa: BLE001 - any failure: the export folder is unusable
        raise CheckpointError(
            f"{folder}: cannot load the split model ({type(err).__name__}: "
            f"{(str(err).splitlines() or [''])[0][:160]})"
        ) from None
    return split.eval().requires_grad_(False)
