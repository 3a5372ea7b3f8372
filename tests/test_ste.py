# SPDX-License-Identifier: Apache-2.0
"""Straight-through functions: exact forward values and the documented gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from odimo.ste import ceil_div_ste, floor_pow2_ste, floor_ste, gate_ste, round_ste


def value_and_grad(fn, values, *args):
    x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    y = fn(x, *args)
    y.sum().backward()
    return y.detach().tolist(), x.grad.tolist()


def test_round_ste_rounds_half_to_even_with_identity_gradient():
    y, g = value_and_grad(round_ste, [-1.6, -0.5, 0.4, 0.5, 1.5, 2.5, 3.49])
    assert y == [-2.0, -0.0, 0.0, 0.0, 2.0, 2.0, 3.0]
    assert g == [1.0] * 7


def test_floor_ste_floors_with_identity_gradient():
    y, g = value_and_grad(floor_ste, [-1.5, -0.1, 0.0, 0.9, 2.0])
    assert y == [-2.0, -1.0, 0.0, 0.0, 2.0]
    assert g == [1.0] * 5


def test_ceil_div_ste_method_values_for_n16():
    y, g = value_and_grad(ceil_div_ste, [0.0, 0.5, 1.0, 15.5, 16.0, 16.5, 17.0, 32.0, 33.0], 16)
    assert y == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 3.0]
    assert g == pytest.approx([1 / 16] * 9)


@given(x=st.integers(0, 5000), n=st.sampled_from([1, 2, 16, 128, 512]))
@settings(max_examples=200, deadline=None)
def test_ceil_div_ste_is_integer_ceil_for_whole_counts(x, n):
    y = ceil_div_ste(torch.tensor(float(x), dtype=torch.float64), n)
    assert float(y) == math.ceil(x / n)


@given(x=st.floats(0, 2000, allow_nan=False), n=st.sampled_from([16, 128, 512]))
@settings(max_examples=200, deadline=None)
def test_ceil_div_ste_is_floor_of_shifted_quotient_for_soft_counts(x, n):
    """For fractional counts the method's ceil is floor((x+n-1)/n), never above ceil(x/n)."""
    y = float(ceil_div_ste(torch.tensor(x, dtype=torch.float64), n))
    assert y == math.floor((x + n - 1) / n)
    assert y <= math.ceil(x / n)


def test_gate_ste_forward_is_step_at_one():
    y, g = value_and_grad(gate_ste, [-1.0, 0.0, 0.5, 0.999, 1.0, 1.001, 3.0])
    assert y == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    # gradient of the soft gate: 1 on [0, 1] (bounds included), 0 elsewhere
    assert g == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=32))
@settings(max_examples=100, deadline=None)
def test_gate_ste_gradient_lies_in_unit_interval(values):
    y, g = value_and_grad(gate_ste, values)
    assert all(v in (0.0, 1.0) for v in y)
    assert all(0.0 <= v <= 1.0 for v in g)
    assert y == [float(v >= 1) for v in values]


def test_floor_pow2_ste_values_and_gradient():
    y, g = value_and_grad(floor_pow2_ste, [0.3, 1.0, 3.0, 4.0, 127 / 6])
    assert y == [0.25, 1.0, 2.0, 4.0, 16.0]
    assert g == [1.0] * 5


@given(st.floats(1e-6, 1e6, allow_nan=False))
@settings(max_examples=200, deadline=None)
def test_floor_pow2_ste_is_largest_power_of_two_not_above(x):
    y = float(floor_pow2_ste(torch.tensor(x, dtype=torch.float64)))
    exponent = math.log2(y)
    assert exponent == round(exponent)
    assert y <= x < 2 * y
