# SPDX-License-Identifier: Apache-2.0
"""The 7-bit PaCT activation quantizer: grid, range, gradients, and a clip that never snaps."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from odimo.quant import UintActPact
from odimo.quant.activation import pow2_exponent


def quantizer(clip: float) -> UintActPact:
    return UintActPact(init_clip=clip)


@pytest.mark.parametrize(
    "clip, step",
    [(6.0, 1 / 16), (1.0, 1 / 64), (7.9375, 1 / 16), (8.0, 1 / 8), (127.0, 1.0), (0.5, 1 / 128)],
)
def test_step_is_largest_power_of_two_grid_that_fits_127_levels(clip, step):
    q = quantizer(clip)
    assert float(q.step()) == step
    assert float(q.scale()) == 1 / step
    assert math.floor(clip / step) <= 127


@given(clip=st.floats(0.01, 200.0), data=st.lists(st.floats(-300, 300), min_size=1, max_size=64))
@settings(max_examples=150, deadline=None)
def test_outputs_on_grid_within_range(clip, data):
    q = quantizer(clip)
    x = torch.tensor(data)
    y = q(x).detach()
    step = float(q.step())
    assert math.log2(step) == round(math.log2(step))  # a power of two
    levels = y / step
    assert torch.equal(levels, levels.round())  # multiples of the step
    assert 0 <= float(levels.max()) <= 127
    assert float(y.min()) >= 0 and float(y.max()) <= clip * (1 + 1e-6)
    assert torch.all(y[x <= 0] == 0)
    # floor, not round: never above the clamped input
    assert torch.all(y <= x.clamp(0, clip) + 1e-6)
    assert torch.all(x.clamp(0, clip) - y < step * (1 + 1e-6))


def test_values_for_the_default_clip():
    q = quantizer(6.0)
    x = torch.tensor([-1.0, 0.0, 0.03, 0.0625, 0.1, 5.99, 6.0, 9.0])
    assert q(x).tolist() == [0.0, 0.0, 0.0, 0.0625, 0.0625, 5.9375, 6.0, 6.0]


def test_gradients_inside_outside_and_clip():
    q = quantizer(2.0)
    x = torch.tensor([-1.0, 0.0, 0.5, 1.99, 2.0, 3.0, 5.0], requires_grad=True)
    q(x).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert float(q.clip.grad) == 3.0  # elements >= clip


@given(clip=st.floats(0.1, 20.0), n=st.integers(1, 200))
@settings(max_examples=50, deadline=None)
def test_clip_gradient_counts_elements_at_or_above_clip(clip, n):
    q = quantizer(clip)
    x = (torch.rand(n) * 2 * clip - 0.2 * clip).requires_grad_()
    q(x).sum().backward()
    assert float(q.clip.grad) == float((x.detach() >= q.clip.detach()).sum())
    inside = (x.detach() > 0) & (x.detach() < clip)
    assert torch.equal(x.grad, inside.float())


def test_clip_is_continuous_and_never_written_back():
    q = quantizer(6.0)
    for _ in range(3):
        q(torch.randn(100) * 10).sum().backward()
    assert q.clip.item() == 6.0  # the reference would snap it to 7.9375
    with torch.no_grad():
        q.clip.add_(0.01)
    q(torch.randn(10))
    assert q.clip.item() == pytest.approx(6.01)  # a small step moves it by exactly that


def test_bad_init_and_helpers():
    with pytest.raises(ValueError, match="init_clip"):
        UintActPact(init_clip=0.0)
    assert pow2_exponent(0.0625) == -4 and pow2_exponent(6.0) == 2
    assert "bits=7" in repr(quantizer(1.0))


def test_old_name_still_loads() -> None:
    """`Uint7ActPact` was renamed `UintActPact` (its bits come from the platform): the old name
    imports, state-dict keys are unchanged, and a pickle that names the old class loads."""
    import pickle

    from odimo.quant import Uint7ActPact
    from odimo.quant.activation import UintActPact as Renamed

    assert Uint7ActPact is Renamed
    act = Renamed(6.0, bits=8)
    act.load_state_dict({"clip": torch.tensor(2.5)})  # the only key the old class saved
    assert list(act.state_dict()) == ["clip"]
    old = pickle.dumps(act, protocol=0).replace(b"\nUintActPact\n", b"\nUint7ActPact\n")
    assert b"odimo.quant.activation\nUint7ActPact\n" in old
    loaded = pickle.loads(old)
    x = torch.linspace(-1.0, 4.0, 101)
    assert type(loaded) is Renamed and loaded.bits == 8
    assert torch.equal(loaded(x), act(x)) and float(loaded.clip.detach()) == 2.5
