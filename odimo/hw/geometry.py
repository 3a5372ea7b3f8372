# SPDX-License-Identifier: Apache-2.0
"""Layer geometry: what a cost model needs to know about a conv, recorded by a dry forward pass."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class LayerGeometry:
    """Geometry of one convolution as the hardware sees it.

    `o_x` is the output width, `o_y` the output height; `k_x`/`k_y` the kernel width/height.
    A linear classifier is a 1x1 conv on a 1x1 map.
    """

    name: str
    c_in: int
    c_out: int
    k_x: int
    k_y: int
    stride: int
    groups: int
    o_x: int
    o_y: int
    #: True for a layer whose output channels each choose an operator (Darkside's slots: a
    #: full conv, or the 3x3 depthwise filter of the channel's own input).
    operator_choice: bool = False

    @property
    def is_grouped(self) -> bool:
        """True for grouped and depthwise convs."""
        return self.groups > 1

    def as_dict(self) -> dict:
        """Plain dict (for JSON reports)."""
        return asdict(self)


class GeometryTable:
    """All layers of a network as float tensors of shape [L], for vectorised costs."""

    FIELDS = ("c_in", "c_out", "k_x", "k_y", "groups", "o_x", "o_y", "operator_choice")

    def __init__(
        self,
        layers: list[LayerGeometry],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        self.layers = tuple(layers)
        self.dtype = dtype
        self.names = tuple(g.name for g in layers)
        for field in self.FIELDS:
            values = [float(getattr(g, field)) for g in layers]
            setattr(self, field, torch.tensor(values, dtype=dtype, device=device))

    def __len__(self) -> int:
        return len(self.layers)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """A copy on another device and/or dtype."""
        return GeometryTable(list(self.layers), device=device, dtype=dtype or self.dtype)

    # typed accessors (set dynamically above)
    c_in: Tensor
    c_out: Tensor
    k_x: Tensor
    k_y: Tensor
    groups: Tensor
    o_x: Tensor
    o_y: Tensor
    operator_choice: Tensor


@torch.no_grad()
def record_geometry(model: nn.Module, input_size: tuple[int, int, int]) -> list[LayerGeometry]:
    """Run one dry forward pass of a single zero image and record every `nn.Conv2d` in call order.

    Every conv form of odimo (float, search, mapped, split parts excluded) subclasses `nn.Conv2d`,
    so the same function serves them all. A conv called twice is recorded once.
    """
    records: dict[str, LayerGeometry] = {}
    hooks = []

    def make_hook(name: str):
        def hook(module: nn.Conv2d, args: tuple, output: Tensor) -> None:
            if name in records:
                return
            k_y, k_x = module.kernel_size
            records[name] = LayerGeometry(
                name=name,
                c_in=module.in_channels,
                c_out=module.out_channels,
                k_x=int(k_x),
                k_y=int(k_y),
                stride=int(module.stride[0]),
                groups=module.groups,
                o_x=int(output.shape[-1]),
                o_y=int(output.shape[-2]),
                operator_choice=bool(getattr(module, "operator_choice", False)),
            )

        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and not getattr(module, "cost_exempt", False):
            hooks.append(module.register_forward_hook(make_hook(name)))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        model(torch.zeros(1, *input_size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return list(records.values())
