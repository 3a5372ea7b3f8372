# SPDX-License-Identifier: Apache-2.0
"""Quantized residual add (one shared clip) and average pooling (quantized input)."""

from __future__ import annotations

import torch

from odimo.quant import FloatAdd, FloatAvgPool2d, QuantAdd, QuantAvgPool2d, UintActPact


def test_quant_add_quantizes_both_addends_with_one_shared_clip():
    act = UintActPact(2.0)
    add = QuantAdd(act)
    assert [p for p in add.parameters()] == [act.clip]  # one clip, the given one
    a = (torch.randn(2, 4, 5, 5) * 2).requires_grad_()
    b = (torch.randn(2, 4, 5, 5) * 2).requires_grad_()
    y = add(a, b)
    assert torch.equal(y, act(a) + act(b))
    # the sum lies on the shared grid (integers in steps) and is not re-clipped
    levels = y / act.step()
    assert torch.equal(levels, levels.round())
    assert y.max().item() > 2.0
    y.sum().backward()
    expected = float((a.detach() >= 2.0).sum() + (b.detach() >= 2.0).sum())
    assert float(act.clip.grad) == expected  # the clip gets the gradient of both addends


def test_quant_avg_pool_quantizes_its_input_not_its_output():
    act = UintActPact(1.0)  # step 1/64
    pool = QuantAvgPool2d(act)
    x = torch.tensor([[[[0.015, 0.015], [0.015, 0.02]]]])
    y = pool(x)
    assert y.shape == (1, 1, 1, 1)
    assert torch.equal(y, act(x).mean(dim=(-2, -1), keepdim=True))
    # quantizing the output instead would give a different value here
    assert y.item() == 1 / 64 / 4
    assert act(x.mean(dim=(-2, -1), keepdim=True)).item() == 1 / 64
    x = torch.randn(3, 5, 4, 4) * 3
    assert torch.allclose(pool(x), act(x).mean(dim=(-2, -1), keepdim=True))


def test_float_ops():
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert torch.equal(FloatAdd()(a, b), a + b)
    assert torch.allclose(FloatAvgPool2d()(a), a.relu().mean(dim=(-2, -1), keepdim=True))
