# SPDX-License-Identifier: Apache-2.0
"""Fused (compiled) kernels: the same numbers as the eager ones, and a clean fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from odimo.quant import UintActPact, fused


@pytest.fixture
def restore_fused():
    """A fresh compiler state (other tests of the process may have filled Dynamo's caches)."""
    state = fused._State
    saved = state.enabled, dict(state.compiled), set(state.failed)
    torch._dynamo.reset()
    state.compiled, state.failed = {}, set()
    yield
    state.enabled, state.compiled, state.failed = saved


def pact_run(x: torch.Tensor, clip: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    act = UintActPact(clip)
    x = x.clone().requires_grad_()
    y = act(x)
    y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
    return y.detach(), x.grad, act.clip.grad


@pytest.mark.parametrize("shape", [(4, 3, 9, 9), (2, 5, 4, 4), (7, 6)])
def test_compiled_kernels_equal_eager(restore_fused, shape):
    """Outputs and input gradients to the bit; the clip gradient (a sum) to rounding."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 3
    x.view(-1)[:5] = torch.tensor([0.0, 2.5, 2.5 + 1e-3, -0.0, 2.4999])  # the range's edges
    fused.set_fused(True)
    compiled = pact_run(x, 2.5)
    assert not fused.compiled_signatures_failed(), "the kernels should compile on this machine"
    fused.set_fused(False)
    eager = pact_run(x, 2.5)
    assert torch.equal(compiled[0], eager[0]) and torch.equal(compiled[1], eager[1])
    torch.testing.assert_close(compiled[2], eager[2], rtol=1e-6, atol=1e-6)
    assert eager[2].item() != 0.0  # some inputs lie above the clip


def test_clip_without_gradient_uses_the_x_only_kernel(restore_fused):
    act = UintActPact(2.0)
    act.clip.requires_grad_(False)
    x = (torch.randn(3, 4, 5, 5) * 3).requires_grad_()
    act(x).sum().backward()
    inside = (x > 0) & (x < 2.0)
    assert torch.equal(x.grad, inside.float())
    assert act.clip.grad is None


def test_compile_failure_falls_back_to_eager_once(restore_fused, monkeypatch):
    def broken(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler found\nmore detail")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    fused.set_fused(True)
    x = torch.randn(2, 3, 4, 4) * 3
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found.*eager kernels"):
        got = pact_run(x, 2.0)
    assert ("pact_forward", torch.float32, "cpu") in fused.compiled_signatures_failed()
    fused.set_fused(False)
    expected = pact_run(x, 2.0)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_a_failed_signature_leaves_the_compiled_ones(restore_fused, monkeypatch):
    """After a failure for one dtype, dtypes already compiled stay compiled."""
    fused.set_fused(True)
    x32 = torch.randn(2, 3, 4, 4) * 3
    pact_run(x32, 2.0)  # compiles the float32 kernels
    real = fused._State.compiled["pact_forward"]

    def picky(*args):
        if args[0].dtype == torch.float64:
            raise RuntimeError("no float64 kernels here")
        return real(*args)

    monkeypatch.setitem(fused._State.compiled, "pact_forward", picky)
    with pytest.warns(RuntimeWarning, match="float64"):
        pact_run(x32.double(), 2.0)
    assert fused.compiled_signatures_failed() == {("pact_forward", torch.float64, "cpu")}
    calls = []
    monkeypatch.setitem(
        fused._State.compiled, "pact_forward", lambda *a: calls.append(a) or real(*a)
    )
    pact_run(x32, 2.0)
    pact_run(x32.double(), 2.0)
    assert len(calls) == 1  # float32 compiled, float64 eager


def test_ranks_ones_and_layouts_share_one_kernel(restore_fused):
    """Many shapes (size-1 dims, ranks 1-5), channels-last and strided inputs, and a gradient in
    another layout than x: all compiled (no recompile limit reached), all equal to eager."""
    shapes = [
        (1, 3, 4, 4),
        (2, 1, 4, 4),
        (2, 3, 1, 1),
        (5,),
        (1,),
        (3, 7),
        (1, 1),
        (2, 2, 2),
        (2, 3, 2, 2, 2),
        (1, 8, 1, 8),
        (4, 4, 3, 3),
        (6, 1),
        (1, 6),
        (2, 5, 3, 1),
    ]
    cases = [torch.randn(s) * 3 for s in shapes]
    cases.append((torch.randn(2, 3, 5, 5) * 3).contiguous(memory_format=torch.channels_last))
    cases.append((torch.randn(4, 6) * 3)[:, ::2])  # not dense: copied first
    cases.append((torch.randn(3, 4) * 3).t())  # dense but transposed: copied first
    fused.set_fused(True)
    for x in cases:
        act = UintActPact(2.5)
        results = []
        for enabled in (True, False):
            fused.set_fused(enabled)
            xi = x.clone(memory_format=torch.preserve_format).requires_grad_()
            y = act(xi)
            grad = (
                torch.linspace(-1, 1, y.numel())
                .view(y.shape[::-1])
                .permute(*reversed(range(y.dim())))
            )  # a gradient whose strides differ from y's
            act.clip.grad = None
            y.backward(grad)
            results.append((y.detach(), xi.grad, act.clip.grad.clone()))
        (yc, gc, cc), (ye, ge, ce) = results
        assert yc.shape == x.shape and torch.equal(yc, ye) and torch.equal(gc, ge), x.shape
        torch.testing.assert_close(cc, ce, rtol=1e-6, atol=1e-6)
    assert not fused.compiled_signatures_failed()


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
        ),
        MemoryError(),
    ],
    ids=["cuda", "cpu", "python"],
)
def test_out_of_memory_is_not_a_compiler_failure(restore_fused, monkeypatch, error):
    """An allocation failure propagates; the signature is not switched to eager."""

    def oom(*args):
        raise error

    fused.set_fused(True)
    monkeypatch.setitem(fused._State.compiled, "pact_forward", oom)
    with pytest.raises(type(error)):
        pact_run(torch.randn(2, 3, 4, 4), 2.0)
    assert not fused.compiled_signatures_failed()


@pytest.mark.parametrize("kernel", ["readout_value", "readout_delta"])
def test_compiled_read_out_equals_an_independent_integer_computation(restore_fused, kernel):
    """The one-pass read-out of integer partial sums: clamp(p >> m, -32, 31)·2^m + 2^(m-1)
    (the half-LSB offset), minus p for the delta."""
    g = torch.Generator().manual_seed(1)
    p = torch.randint(-3000, 3000, (3, 5, 6, 6), generator=g)
    p.view(-1)[:4] = torch.tensor([-2048, -2049, 1984, 1983])  # at the clip's edges for g = 64
    expected = (p >> 6).clamp(-32, 31) * 64 + 32 - (p if kernel == "readout_delta" else 0)
    fused.set_fused(True)
    got = fused.call(kernel, p.float(), torch.tensor(64.0), torch.tensor(32.0), -32, 31)
    assert not fused.compiled_signatures_failed(), "the kernels should compile on this machine"
    assert torch.equal(got, expected.float())


def test_per_channel_read_out_kernels_equal_an_independent_computation(restore_fused):
    """`readout_add_from_output` (p = round((y − b)/s) per channel, y read out in place on the
    analog channels, kept elsewhere; with `codes` the int8 codes, 0 off the analog channels),
    `readout_affine` (the read-out of p in output units, in place), `readout_codes` (int8
    codes of p), `code_dot` and `channel_dot`, compiled and eager, contiguous and
    channels-last, equal an int64 computation and plain per-channel sums."""
    g = torch.Generator().manual_seed(2)
    p = torch.randint(-3000, 3000, (3, 4, 5, 6), generator=g)
    p.view(-1)[:4] = torch.tensor([-2048, -2049, 1984, 1983])  # at the clip's edges for g = 64
    bias = torch.tensor([0.5, -1.25, 2.0, 0.0]).view(1, -1, 1, 1)
    scale = torch.tensor([0.25, 0.125, 0.5, 1.0]).view(1, -1, 1, 1)
    y = p.float() * scale + bias
    analog = torch.tensor([True, False, True, True]).view(1, -1, 1, 1)
    q = (p >> 6).clamp(-32, 31)
    read = torch.where(analog, (q * 64 + 32).float() * scale + bias, y)
    other = torch.randn(3, 4, 5, 6, generator=g)
    dot = (y.double() * other.double()).sum((0, 2, 3))
    slope, intercept = torch.tensor([1.0, 2.0, -0.5, 3.0]), torch.tensor([0.5, 0.0, 1.0, -2.0])
    code_dot = (other.double() * (slope.double().view(1, -1, 1, 1) * q * analog)).sum((0, 2, 3))
    code_dot += intercept.double() * other.double().sum((0, 2, 3))
    args = (bias, 1 / scale, scale, analog, torch.tensor(1 / 64), torch.tensor(64.0))
    for enabled in (True, False):
        fused.set_fused(enabled)
        for layout in (torch.contiguous_format, torch.channels_last):
            out = y.clone().contiguous(memory_format=layout)
            adc = (torch.tensor(32.0), -32, 31)
            assert fused.call("readout_add_from_output", out, *args, *adc, False) is None
            assert torch.equal(out, read)
            out = y.clone().contiguous(memory_format=layout)
            codes = fused.call("readout_add_from_output", out, *args, *adc, True)
            assert torch.equal(out, read) and codes.dtype == torch.int8
            assert torch.equal(codes.long(), q * analog)
            sums = p.float().contiguous(memory_format=layout)
            full = fused.call("readout_codes", sums, torch.tensor(1 / 64), -32, 31)
            assert full.dtype == torch.int8 and torch.equal(full.long(), q)
            got = fused.call("code_dot", other, codes, slope.view(1, -1, 1, 1), intercept)
            assert torch.allclose(got.double(), code_dot, rtol=1e-5)
            sums = p.float().contiguous(memory_format=layout)
            affine = (1 / 64, 64.0, 32.0)
            fused.call("readout_affine", sums, *map(torch.tensor, affine), scale, bias, -32, 31)
            assert torch.equal(sums, (q * 64 + 32).float() * scale + bias)
        assert torch.allclose(fused.call("channel_dot", y, other).double(), dot, rtol=1e-5)
    assert not fused.compiled_signatures_failed()


@pytest.mark.parametrize("relative", [False, True])
def test_read_out_kernels_with_noise_equal_an_independent_computation(restore_fused, relative):
    """Given standard normal draws z, `readout_affine`, `readout_add_from_output` and
    `readout_codes` read out floor(p/g + n) with n = z·σ (additive) or z·|p|/(g·snr)
    (relative), compiled and eager, contiguous and channels-last: equal to a float64
    computation of the same codes (σ, g·snr and the draws powers of two over 64: every
    product exact, so the codes must match to the bit)."""
    g = torch.Generator().manual_seed(3)
    p = torch.randint(-3000, 3000, (3, 4, 5, 6), generator=g)
    z = torch.randint(-192, 192, (3, 4, 5, 6), generator=g).float() / 64  # |z| < 3
    sigma, gsnr = torch.tensor(0.5), torch.tensor(64.0 * 32)
    noise = (None, gsnr) if relative else (sigma, None)
    n = z.double() * (p.abs().double() / 2048 if relative else 0.5)
    q = torch.floor(p.double() / 64 + n).clamp(-32, 31)
    assert not torch.equal(q, torch.floor(p.double() / 64).clamp(-32, 31))  # the noise moves it
    bias = torch.tensor([0.5, -1.25, 2.0, 0.0]).view(1, -1, 1, 1)
    scale = torch.tensor([0.25, 0.125, 0.5, 1.0]).view(1, -1, 1, 1)
    y = p.float() * scale + bias
    analog = torch.tensor([True, False, True, True]).view(1, -1, 1, 1)
    read = torch.where(analog, (q.float() * 64 + 32) * scale + bias, y)
    rg, gain, offset = torch.tensor(1 / 64), torch.tensor(64.0), torch.tensor(32.0)
    args = (bias, 1 / scale, scale, analog, rg, gain, offset, -32, 31, True)
    for enabled in (True, False):
        fused.set_fused(enabled)
        for layout in (torch.contiguous_format, torch.channels_last):
            zl = z.contiguous(memory_format=layout)
            out = y.clone().contiguous(memory_format=layout)
            codes = fused.call("readout_add_from_output", out, *args, zl, *noise)
            assert torch.equal(out, read) and torch.equal(codes.long(), (q * analog).long())
            sums = p.float().contiguous(memory_format=layout)
            got = fused.call("readout_codes", sums, rg, -32, 31, zl, *noise)
            assert torch.equal(got.long(), q.long())
            fused.call("readout_affine", sums, rg, gain, offset, scale, bias, -32, 31, zl, *noise)
            assert torch.equal(sums, (q.float() * 64 + 32) * scale + bias)
    assert not fused.compiled_signatures_failed()


def _python_counter_normal(i: int, k0: int, k1: int) -> np.float32:
    """Draw i of `counter_normal` with key (k0, k1), in unsigned Python integers: murmur3's
    finaliser as published (logical shifts, products mod 2^32), eight bytes, Irwin–Hall."""
    m = 0xFFFFFFFF

    def fmix(h: int) -> int:
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & m
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & m
        return h ^ (h >> 16)

    h = fmix(fmix((i * 0x9E3779B9 + (k0 & m)) & m) ^ (k1 & m))
    h2 = fmix((h + 0x61C88647) & m)
    total = sum((v >> b) & 255 for v in (h, h2) for b in (0, 8, 16, 24))
    return np.float32(total - 1020) * np.float32((8 * (256**2 - 1) / 12) ** -0.5)


@pytest.mark.parametrize("compiled", [False, True])
def test_counter_draws_equal_an_unsigned_integer_computation(restore_fused, compiled):
    """The int32 kernel (wrapping products, masked shifts) computes the unsigned hash: compiled
    and eager, for a key with a negative and a large word."""
    key = torch.tensor([-5, 2_000_000_011], dtype=torch.int32)
    fused.set_fused(compiled)
    got = fused.call("counter_normal", torch.empty(3, 700), key)
    assert not fused.compiled_signatures_failed(), "the kernels should compile on this machine"
    want = [_python_counter_normal(i, -5, 2_000_000_011) for i in range(2100)]
    assert got.shape == (3, 700) and got.dtype == torch.float32
    assert np.array_equal(got.flatten().numpy(), np.array(want, dtype=np.float32))


def test_counter_draws_have_the_moments_of_a_scaled_irwin_hall_sum(restore_fused):
    """Mean 0, variance 1, kurtosis 3 − 6/(5·8) = 2.85 (a sum of 8 uniform bytes, not 4 or 1),
    |draw| ≤ 1020/σ_sum with tails past 3.5; other keys give uncorrelated draws, neighbours are
    uncorrelated, the same key the same draws."""
    fused.set_fused(True)
    key = torch.tensor([11, 12], dtype=torch.int32)
    z = fused.call("counter_normal", torch.empty(1 << 20), key).double()
    assert abs(float(z.mean())) < 0.005 and abs(float(z.std()) - 1.0) < 0.005
    assert abs(float(z.pow(4).mean()) - 2.85) < 0.03
    bound = 1020 / math.sqrt(8 * (256**2 - 1) / 12)
    assert float(z.abs().max()) <= bound and float(z.abs().max()) > 3.5
    assert abs(float((z[1:] * z[:-1]).mean())) < 0.005
    for other in ([12, 12], [11, 13], [-11, 12]):
        other_key = torch.tensor(other, dtype=torch.int32)
        w = fused.call("counter_normal", torch.empty(1 << 20), other_key)
        assert abs(float((z * w.double()).mean())) < 0.005
    assert torch.equal(fused.call("counter_normal", torch.empty(1 << 20), key).double(), z)
