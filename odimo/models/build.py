# SPDX-License-Identifier: Apache-2.0
"""Build any model in any form, fold BatchNorm into the quantized forms, convert between forms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from odimo.convert.sources import custom_model as convert_custom
from odimo.convert.sources import torchvision_model as convert_torchvision
from odimo.errors import CheckpointError, ConfigError
from odimo.hw.platform import Platform
from odimo.models.darkside import darkside_mbv1
from odimo.models.mobilenet import mbv1
from odimo.models.resnet import res18, res20
from odimo.nn.conv import Conv2dBN, QuantConv2d
from odimo.nn.factory import make_ops
from odimo.nn.mapping import Mapping, apply_mapping, model_mapping, quant_layers
from odimo.spaces import build_sampled


def sampled(ops, input_size, num_classes: int, **options):
    """A network of a sampled space (`space`, `law`, `id` options); see `odimo.spaces`."""
    missing = [k for k in ("space", "law", "id") if options.get(k) is None]
    if missing:
        raise ConfigError(f"model=sampled needs model.{', model.'.join(missing)}")
    return build_sampled(ops, input_size, num_classes, **options)


def torchvision_model(ops, input_size, num_classes: int, **options) -> nn.Module:
    """Any torchvision classifier, converted with torch.fx (`odimo.convert`)."""
    return convert_torchvision(ops, input_size, num_classes, **options)


def custom_model(ops, input_size, num_classes: int, **options) -> nn.Module:
    """A user's float network factory (`model.target`), converted with torch.fx."""
    return convert_custom(ops, input_size, num_classes, **options)


MODELS = {
    "res20": res20,
    "res18": res18,
    "mbv1": mbv1,
    "darkside_mbv1": darkside_mbv1,
    "torchvision": torchvision_model,
    "custom": custom_model,
    "sampled": sampled,
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: architecture, input size [C, H, W], classes.

    `options` holds the architecture's own keyword arguments (e.g. a sampled space's
    `space`/`law`/`id`), as sorted (key, value) pairs so the spec stays hashable.
    """

    name: str
    input_size: tuple[int, int, int]
    num_classes: int
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        """`options` as keyword arguments of the model's builder."""
        return dict(self.options)

    @property
    def label(self) -> str:
        """The name reports show: the architecture with what tells it apart
        (`torchvision:mobilenet_v2`, `custom:pkg.nets:cnn`, `sampled:resnet/s3/17`)."""
        o = self.kwargs
        if self.name == "torchvision" and o.get("arch"):
            return f"torchvision:{o['arch']}"
        if self.name == "custom" and o.get("target"):
            return f"custom:{o['target']}"
        if self.name == "sampled" and {"space", "law", "id"} <= o.keys():
            return f"sampled:{o['space']}/{o['law']}/{o['id']}"
        return self.name

    def to_json(self) -> dict:
        """A JSON-ready dict (the checkpoint format); `from_json` inverts it."""
        return {
            "name": self.name,
            "input_size": list(self.input_size),
            "num_classes": self.num_classes,
            "options": self.kwargs,
        }

    @classmethod
    def from_json(cls, data: dict) -> ModelSpec:
        return cls(
            str(data["name"]),
            tuple(int(v) for v in data["input_size"]),
            int(data["num_classes"]),
            make_options(data.get("options") or {}),
        )


def make_options(options: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Sorted, hashable (key, value) pairs; lists become tuples."""

    def freeze(v):
        if isinstance(v, (list, tuple)):
            return tuple(freeze(x) for x in v)
        return v

    return tuple(sorted((str(k), freeze(v)) for k, v in options.items()))


def model_spec(model_cfg, input_size, num_classes: int) -> ModelSpec:
    """The spec of a `model` config group entry: `name` plus any further keys as options."""
    from omegaconf import OmegaConf

    data = (
        OmegaConf.to_container(model_cfg, resolve=True)
        if OmegaConf.is_config(model_cfg)
        else dict(model_cfg)
    )
    name = str(data.pop("name"))
    return ModelSpec(name, tuple(int(v) for v in input_size), int(num_classes), make_options(data))


def build_model(spec: ModelSpec, form: str = "float", platform: Platform | None = None):
    """The model of `spec` in the given form ("float", "search" or "mapped").

    A mapped model starts all-digital; use `apply_mapping` to set another mapping.
    """
    if spec.name not in MODELS:
        raise ConfigError(f"unknown model {spec.name!r} (choose from: {', '.join(MODELS)})")
    model = MODELS[spec.name](
        make_ops(form, platform), tuple(spec.input_size), spec.num_classes, **spec.kwargs
    )
    model.spec = spec
    model.form = form
    return model


@torch.no_grad()
def fold_float_into(quant_model: nn.Module, float_model: nn.Module) -> None:
    """Copy a trained float model into a search/mapped model, folding each BatchNorm.

    Then initialise every unit's weight quantizer from the folded weights.
    """
    sources = dict(float_model.named_modules())
    for name, layer in quant_layers(quant_model).items():
        src = sources.get(name)
        if not isinstance(src, nn.Conv2d) or src.weight.shape != layer.weight.shape:
            raise CheckpointError(
                f"float model has no conv {name!r} of shape "
                f"{tuple(layer.weight.shape)}: it is not the same network"
            )
        if isinstance(src, Conv2dBN):
            weight, bias = src.folded()
        else:
            weight = src.weight
            bias = src.bias if src.bias is not None else torch.zeros_like(layer.bias)
        layer.load_float(weight, bias, src)
        layer.init_quantizers()


def searchable_names(model: nn.Module) -> list[str]:
    """Names of the convs whose mapping is free (not fixed by the architecture), any form."""
    return [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and getattr(m, "searchable", False)
    ]


@torch.no_grad()
def to_mapped(model: nn.Module, platform: Platform, mapping: Mapping | None = None) -> nn.Module:
    """A mapped copy of a search (or mapped) model: same weights and quantizers, frozen mapping.

    Without `mapping`, the model's own hard mapping (argmax of α, ties to digital) is used.
    """
    if mapping is None:
        mapping = model_mapping(model, platform)
    mapped = build_model(model.spec, "mapped", platform).to(next(model.parameters()).device)
    state = {
        k: v for k, v in model.state_dict().items() if not k.endswith((".alpha", ".temperature"))
    }
    missing, unexpected = mapped.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(".assignment")]
    if missing or unexpected:
        raise CheckpointError(
            f"cannot convert to mapped form: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    apply_mapping(mapped, mapping)
    return mapped


def is_quantized(model: nn.Module) -> bool:
    """True for the search and mapped forms."""
    return any(isinstance(m, QuantConv2d) for m in model.modules())
