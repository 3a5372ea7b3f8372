# SPDX-License-Identifier: Apache-2.0
"""Test references: the paper's three networks and a plain-Python transcription of the method's
§4 cost model, written independently of the vectorised `odimo.hw.diana`."""

from __future__ import annotations

import math

from odimo.hw import LayerGeometry
from odimo.models import ModelSpec

#: The paper's three networks at their paper input sizes (method §8).
REFERENCE_SPECS = {
    "res20": ModelSpec("res20", (3, 32, 32), 10),
    "res18": ModelSpec("res18", (3, 64, 64), 200),
    "mbv1": ModelSpec("mbv1", (3, 96, 96), 2),
}


def _ceil_n(x: float, n: int) -> int:
    return math.floor((x + n - 1) / n)


def _ref_unroll(g: LayerGeometry, c_a: int) -> int:
    fits = [
        u
        for u in (1, 2, 4, 8)
        if u * c_a <= 512 and (u + g.k_x - 1) * max(64, g.c_in) * g.k_y <= 1152
    ]
    return max(fits) if fits else 1


def ref_digital_cycles(g: LayerGeometry, c_d: int) -> float:
    """T_d of method §4, literally."""
    compute = _ceil_n(c_d / g.groups, 16) * g.c_in * _ceil_n(g.o_x, 16) * g.o_y * g.k_x * g.k_y
    return compute + (c_d >= 1) * g.o_x * g.o_y * (c_d + g.c_in) / 8


def ref_analog_cycles(g: LayerGeometry, c_a: int) -> float:
    """T_a of method §4, literally (18.2 cycles per array activation)."""
    load = (c_a >= 1) * 8 * g.c_in * g.k_x * g.k_y
    passes = _ceil_n(c_a, 512) * _ceil_n(g.c_in, 128) * g.o_x * g.o_y
    return load + passes / _ref_unroll(g, c_a) * 18.2


class RefCost:
    """The §4 cost model in plain Python, to check the vectorised torch one against."""

    digital = staticmethod(ref_digital_cycles)
    analog = staticmethod(ref_analog_cycles)
    unroll = staticmethod(_ref_unroll)

    @staticmethod
    def latency(g: LayerGeometry, c_d: int, c_a: int) -> float:
        return max(ref_digital_cycles(g, c_d), ref_analog_cycles(g, c_a))

    @staticmethod
    def energy(g: LayerGeometry, c_d: int, c_a: int) -> float:
        t_d, t_a = ref_digital_cycles(g, c_d), ref_analog_cycles(g, c_a)
        t_c = min(t_d, t_a)
        return 42.39 * t_c + 28.74 * (t_a - t_c) + 24.96 * (t_d - t_c)
