# SPDX-License-Identifier: Apache-2.0
"""Where converted networks come from: torchvision classifiers or a user's factory, plus weights.

Both builders have the signature of odimo's model builders (`odimo.models.build.MODELS`):
`(ops, input_size, num_classes, **options)`. The float form loads `weights` (a local
state-dict file) into the source network before converting it; the quantized forms never read
it (their weights come from the float form through `fold_float_into`), and build the source
on the meta device, so building them costs no initialisation.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from odimo.convert.convert import convert
from odimo.convert.trace import ConversionError
from odimo.errors import CheckpointError, ConfigError
from odimo.nn.factory import FloatOps, QuantOps


def _edge_convs(net: nn.Module) -> tuple[list[str], list[str]]:
    """Conv paths that read the image, and the path of the last conv/linear (the head)."""
    graph = fx.Tracer().trace(net)
    modules = dict(net.named_modules())

    def layer(node: fx.Node) -> bool:
        return node.op == "call_module" and isinstance(modules[node.target], (nn.Conv2d, nn.Linear))

    inputs, frontier, seen = [], [n for n in graph.nodes if n.op == "placeholder"], set()
    while frontier:
        node = frontier.pop()
        for user in node.users:
            if user.name in seen:
                continue
            seen.add(user.name)
            if layer(user):
                inputs.append(user.target)
            else:
                frontier.append(user)
    layers = [n.target for n in graph.nodes if layer(n)]
    return sorted(set(inputs)), layers[-1:]


def _adapt_input_channels(net: nn.Module, channels: int, input_convs: list[str]) -> None:
    """Rebuild the convs that read the image for `channels` input channels (fresh weights)."""
    for path in input_convs:
        conv = net.get_submodule(path)
        if not isinstance(conv, nn.Conv2d) or conv.in_channels == channels:
            continue
        if conv.groups != 1:
            raise ConversionError(f"input conv {path!r} is grouped: cannot change its channels")
        new = nn.Conv2d(
            channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device=conv.weight.device,
        )
        parent, _, child = path.rpartition(".")
        setattr(net.get_submodule(parent) if parent else net, child, new)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise CheckpointError(
            f"{path} is not a readable state-dict file ({type(err).__name__}); save it with "
            "torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} does not hold a state dict (name -> tensor)")
    return data


@torch.no_grad()
def load_weights(net: nn.Module, path: str | Path, input_convs: Iterable[str], head: Iterable[str]):
    """Load a state-dict file into `net`, adapting the two layers that depend on the data.

    An input conv saved for 3 channels and used on 1 gets the sum over its input channels (a
    grey image is an RGB image with three equal channels: the same function). A head saved
    for another class count keeps its fresh initialisation (one line says so). Any other
    difference is an error naming the first keys.
    """
    path = Path(path)
    saved, own = _read_state_dict(path), net.state_dict()
    firsts = tuple(f"{p}.weight" for p in input_convs)
    heads = tuple(f"{p}.{k}" for p in head for k in ("weight", "bias"))
    state, skipped, bad = {}, [], []
    for key, value in saved.items():
        target = own.get(key)
        if target is None or target.shape == value.shape:
            state[key] = value
        elif (
            key in firsts
            and target.shape[1] == 1
            and value.shape[:1] + value.shape[2:] == target.shape[:1] + target.shape[2:]
        ):
            state[key] = value.sum(1, keepdim=True)
        elif key in heads and value.shape[0] != target.shape[0]:
            skipped.append(key)
        else:
            bad.append(f"{key} {list(value.shape)} vs {list(target.shape)}")
    missing = [k for k in own if k not in state and k not in skipped]
    unexpected = [k for k in state if k not in own]
    if bad or missing or unexpected:
        parts = [f"shapes differ: {bad[:3]}"] if bad else []
        parts += [f"missing {missing[:3]}"] if missing else []
        parts += [f"unexpected {unexpected[:3]}"] if unexpected else []
        raise CheckpointError(f"{path} does not fit the network: {'; '.join(parts)}")
    net.load_state_dict(state, strict=False)
    if skipped:
        print(
            f"weights {path}: head {skipped[0].rsplit('.', 1)[0]!r} has another class count "
            "in the file: it keeps its fresh initialisation"
        )


def _prepared(
    make: Callable[[], nn.Module],
    ops: FloatOps | QuantOps,
    input_size: tuple[int, int, int],
    weights: str | None,
    fixed: Iterable[str],
    substitute: str | None = None,
):
    """Build the source (on the meta device for quantized forms), adapt, load, convert."""
    on_meta = ops.form != "float"
    try:
        with torch.device("meta") if on_meta else contextlib.nullcontext():
            net = make()
    except NotImplementedError:
        # a builder that reads tensor values while building (torchvision's RegNets compute
        # their widths with tensors) cannot run on the meta device: build it for real
        on_meta = False
        net = make()
    if not isinstance(net, nn.Module):
        raise ConfigError(f"the model factory returned a {type(net).__name__}, not an nn.Module")
    try:
        input_convs, head = _edge_convs(net)
    except Exception:  # noqa: BLE001 - the converter's own tracing names the problem
        input_convs, head = [], []
    _adapt_input_channels(net, int(input_size[0]), input_convs)
    if weights and not on_meta:
        load_weights(net, weights, input_convs, head)
    return convert(net, ops, tuple(input_size), tuple(fixed or ()), substitute)


def torchvision_model(
    ops: FloatOps | QuantOps,
    input_size: tuple[int, int, int],
    num_classes: int,
    *,
    arch: str | None = None,
    weights: str | None = None,
    kwargs: dict[str, Any] | None = None,
    fixed: Iterable[str] = (),
    substitute_activations: str | None = None,
) -> nn.Module:
    """A torchvision classification network, converted (`model=torchvision model.arch=...`);
    `substitute_activations=relu` swaps ReLU-like activations for ReLU first (docs/convert.md)."""
    try:
        import torchvision
    except ImportError:
        raise ConfigError("model=torchvision needs the torchvision package") from None
    names = torchvision.models.list_models(module=torchvision.models)
    if arch not in names:
        raise ConfigError(
            f"unknown torchvision classification model {arch!r} (e.g. resnet18, mobilenet_v2, "
            f"shufflenet_v2_x0_5, vgg11_bn, squeezenet1_0; {len(names)} in all)"
        )
    extra = dict(kwargs or {})

    def make() -> nn.Module:
        try:
            return torchvision.models.get_model(
                arch, weights=None, num_classes=num_classes, **extra
            )
        except TypeError as err:
            raise ConfigError(f"torchvision {arch}: {err} (check model.kwargs)") from None

    return _prepared(make, ops, input_size, weights, fixed, substitute_activations)


def _import_factory(target: str) -> Callable[..., nn.Module]:
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(
            f"cannot import model.target {target!r} ({type(err).__name__}: {err}); give "
            "'package.module:factory' importable from the current directory or PYTHONPATH"
        ) from None
    if not callable(factory):
        raise ConfigError(f"model.target {target!r} is not callable")
    return factory


def custom_model(
    ops: FloatOps | QuantOps,
    input_size: tuple[int, int, int],
    num_classes: int,
    *,
    target: str | None = None,
    weights: str | None = None,
    kwargs: dict[str, Any] | None = None,
    fixed: Iterable[str] = (),
    substitute_activations: str | None = None,
) -> nn.Module:
    """A user's float network, converted (`model=custom model.target=package.module:factory`).

    The factory gets `model.kwargs`, plus `num_classes`, `in_channels` and `input_size` where
    its signature names them.
    """
    if not target:
        raise ConfigError("model=custom needs model.target=<package.module:factory>")
    factory = _import_factory(str(target))
    extra = dict(kwargs or {})
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    given = {"num_classes": num_classes, "in_channels": input_size[0], "input_size": input_size}
    extra.update({k: v for k, v in given.items() if k in params and k not in extra})
    return _prepared(
        lambda: factory(**extra), ops, input_size, weights, fixed, substitute_activations
    )
