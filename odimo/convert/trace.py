# SPDX-License-Identifier: Apache-2.0
"""Trace a float network with torch.fx and record every tensor's shape (one dry forward pass).

Errors come out as one line: a forward that torch.fx cannot follow (a branch or loop on tensor
values) names the file, line and function where it happens.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from odimo.errors import ConfigError


class ConversionError(ConfigError):
    """A network (or one of its operations) that cannot be converted; the message says why."""


def _user_frame(err: BaseException) -> str:
    """`file:line (function)` of the deepest frame outside torch, where tracing failed."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if "/torch/" not in f.filename]
    if not frames:
        return "an unknown place"
    f = frames[-1]
    return f"{Path(f.filename).name}:{f.lineno} ({f.name})"


def trace(module: nn.Module) -> fx.GraphModule:
    """The module as an fx graph, with torch.nn layers (Conv2d, BatchNorm2d, ...) as leaves."""
    name = type(module).__name__
    try:
        graph = fx.Tracer().trace(module)
    except fx.proxy.TraceError as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "control flow" in text or "iterated" in text or "bool" in text:
            raise ConversionError(
                f"cannot trace {name}: data-dependent control flow at {_user_frame(err)} "
                f"({text}); torch.fx needs a forward whose branches do not depend on tensor "
                "values: rewrite that branch or convert a part of the network without it"
            ) from None
        raise ConversionError(f"cannot trace {name} at {_user_frame(err)}: {text}") from None
    except Exception as err:  # noqa: BLE001 - any tracing failure is reported the same way
        first = str(err).splitlines()[0] if str(err) else ""
        raise ConversionError(
            f"cannot trace {name} at {_user_frame(err)}: {type(err).__name__}: {first}"
        ) from None
    return fx.GraphModule(module, graph, class_name=name)


@torch.no_grad()
def propagate_shapes(gm: fx.GraphModule, input_size: tuple[int, int, int]) -> None:
    """Run one zero image through the graph in eval mode; every node gets `meta['tensor_meta']`."""
    was_training = gm.training
    gm.eval()
    param = next(gm.parameters(), None)
    x = torch.zeros(1, *input_size, device=param.device if param is not None else "cpu")
    try:
        ShapeProp(gm).propagate(x)
    except Exception as err:  # noqa: BLE001 - report the failing input size in one line
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConversionError(
            f"{gm.__class__.__name__} does not run on an input of size {list(input_size)} "
            f"({type(err).__name__}: {first}); check the dataset's input_size and channels"
        ) from None
    finally:
        gm.train(was_training)


def is_tensor(node: fx.Node) -> bool:
    """The node's value is a tensor (not a size, an int or a tuple)."""
    return isinstance(node.meta.get("tensor_meta"), TensorMetadata)


def holds_tensors(node: fx.Node) -> bool:
    """The node's value is a tensor or a tuple/list of tensors (e.g. `chunk`)."""
    meta = node.meta.get("tensor_meta")
    if isinstance(meta, TensorMetadata):
        return True
    return isinstance(meta, (tuple, list)) and any(isinstance(m, TensorMetadata) for m in meta)


def shape(node: fx.Node) -> tuple[int, ...]:
    """The recorded shape of a tensor node (batch of one)."""
    return tuple(node.meta["tensor_meta"].shape)
