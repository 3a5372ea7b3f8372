# SPDX-License-Identifier: Apache-2.0
"""Save and load a finished mapped network (the hand-off to export and evaluation).

File format (`torch.save` of a plain dict; `weights_only=True` loads it):
`{"format": "odimo.mapped/1", "spec": {name, input_size, num_classes, options}, "platform":
<platform identity: name, kind, options, constants, fingerprint>, "analog": <the analog
read-out the network computes with, `platform.analog` as config, or None>, "mapping":
<mapping JSON dict>, "state_dict": <mapped model state dict>}`. Loading rebuilds the
platform from the stored identity (a re-calibrated YAML of the same name does not change an
old model's costs); files that stored only the name load today's platform of that name.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from odimo.errors import CheckpointError, ConfigError, MappingError
from odimo.hw import platform_identity, platform_of_record, with_analog
from odimo.hw.analog import analog_from_config
from odimo.hw.platform import Platform
from odimo.io import atomic_torch_save
from odimo.models.build import ModelSpec, build_model, to_mapped
from odimo.nn.conv import SearchConv2d
from odimo.nn.mapping import Mapping, apply_mapping, model_mapping, quant_layers

FORMAT = "odimo.mapped/1"


def readout_state(state: dict, model: nn.Module) -> dict:
    """`state` without ADC gains the model has no read-out for (a platform with `adc: null`
    evaluates a network trained through the read-out with exact sums)."""
    own = model.state_dict()
    return {k: v for k, v in state.items() if k in own or not k.endswith(".readout.log2_gain")}


def read_out_config(model: nn.Module) -> dict | None:
    """The analog read-out config of the platform the model's layers were built on (None:
    exact sums; a file without the key loads with exact sums, as it was trained)."""
    layers = quant_layers(model)
    analog = next(iter(layers.values())).platform.analog if layers else None
    return None if analog is None else analog.to_config()


def save_mapped(path: str | Path, model: nn.Module, platform: Platform) -> None:
    """Write a mapped (or search: its argmax mapping is taken) model to `path` atomically."""
    if any(isinstance(m, SearchConv2d) for m in model.modules()):
        model = to_mapped(model, platform)  # the file must hold the mapped form's state dict
    mapping = model_mapping(model, platform)
    payload = {
        "format": FORMAT,
        "spec": model.spec.to_json(),
        "platform": platform_identity(platform),
        "analog": read_out_config(model),
        "mapping": mapping.to_json(),
        "state_dict": {
            k: v.detach().cpu()
            for k, v in model.state_dict().items()
            if not k.endswith((".alpha", ".temperature"))
        },
    }
    atomic_torch_save(payload, path)


def load_mapped(path: str | Path) -> tuple[nn.Module, Platform, Mapping]:
    """Rebuild a mapped model saved by `save_mapped`; a clear CheckpointError if it cannot."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an odimo mapped model (format {FORMAT!r})")
    try:
        spec_d = payload["spec"]
        spec = ModelSpec.from_json(spec_d)
        platform = with_analog(
            platform_of_record(payload["platform"]), analog_from_config(payload.get("analog"))
        )
        model = build_model(spec, "mapped", platform)
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        first_line = (str(err).splitlines() or [""])[0]
        raise CheckpointError(
            f"{path} is not a valid odimo mapped model ({type(err).__name__}: {first_line})"
        ) from None
    try:
        mapping = Mapping.from_json(payload["mapping"], source=str(path))
        apply_mapping(model, mapping)
        model.load_state_dict(readout_state(payload["state_dict"], model), strict=True)
    except (KeyError, RuntimeError, MappingError) as err:
        raise CheckpointError(
            f"{path} does not fit a {spec.name} model: {(str(err).splitlines() or [''])[0]}"
        ) from None
    return model, platform, mapping
