# SPDX-License-Identifier: Apache-2.0
"""Straight-through estimators (STE): a non-differentiable forward with a chosen gradient.

Each is written as `x + (f(x) - x).detach()` (or the like), so autograd sees one cheap elementwise
op and the gradient is exactly the one documented in the doctest.
"""

from __future__ import annotations

import torch
from torch import Tensor


def round_ste(x: Tensor) -> Tensor:
    """Round to nearest (half to even), identity gradient.

    >>> x = torch.tensor([0.4, 1.6], requires_grad=True)
    >>> y = round_ste(x); y.sum().backward()
    >>> y.tolist(), x.grad.tolist()
    ([0.0, 2.0], [1.0, 1.0])
    """
    return x + (torch.round(x) - x).detach()


def floor_ste(x: Tensor) -> Tensor:
    """Floor, identity gradient.

    >>> x = torch.tensor([0.9, -0.1], requires_grad=True)
    >>> y = floor_ste(x); y.sum().backward()
    >>> y.tolist(), x.grad.tolist()
    ([0.0, -1.0], [1.0, 1.0])
    """
    return x + (torch.floor(x) - x).detach()


def ceil_div_ste(x: Tensor, n: int) -> Tensor:
    """`floor((x + n - 1) / n)` (the integer ceil of x/n for whole x), gradient 1/n.

    For fractional soft channel counts this is NOT ceil(x/n): 0.5 -> 0 and 16.5 -> 1 for n=16,
    exactly as the DIANA cost model of the method defines it.

    >>> x = torch.tensor([0.5, 16.0, 16.5, 17.0], requires_grad=True)
    >>> y = ceil_div_ste(x, 16); y.sum().backward()
    >>> y.tolist(), x.grad.tolist()
    ([0.0, 1.0, 1.0, 2.0], [0.0625, 0.0625, 0.0625, 0.0625])
    """
    q = (x + (n - 1)) / n
    return q + (torch.floor(q) - q).detach()


def gate_ste(x: Tensor) -> Tensor:
    """The fixed-cost gate `[x >= 1]` of a unit that has work, with gradient 1 on [0, 1], else 0.

    The forward is the exact step of the cost model; the backward lets a layer's last (soft)
    channel on a unit feel the fixed cost it would save, which a plain step cannot.

    >>> x = torch.tensor([0.0, 0.5, 1.0, 3.0], requires_grad=True)
    >>> y = gate_ste(x); y.sum().backward()
    >>> y.tolist(), x.grad.tolist()
    ([0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0])
    """
    # An explicit mask, not clamp's backward: clamp's gradient AT the bounds 0 and 1 depends on
    # the torch version (0 with ours), which would cut it where a unit holds 0 or 1 channel.
    inside = ((x >= 0) & (x <= 1)).to(x.dtype)
    return (x - x.detach()) * inside + (x >= 1).to(x.dtype)


def floor_pow2_ste(x: Tensor) -> Tensor:
    """`2 ** floor(log2(x))` for x > 0, identity gradient (the power-of-two scales of DIANA).

    >>> x = torch.tensor([3.0, 0.3], requires_grad=True)
    >>> y = floor_pow2_ste(x); y.sum().backward()
    >>> y.tolist(), x.grad.tolist()
    ([2.0, 0.25], [1.0, 1.0])
    """
    return x + (torch.exp2(torch.floor(torch.log2(x))) - x).detach()
