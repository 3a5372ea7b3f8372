# SPDX-License-Identifier: Apache-2.0
"""Stateless straight-through functions used by the quantizers and the cost models."""

from odimo.function.ste import ceil_div_ste, floor_pow2_ste, floor_ste, gate_ste, round_ste

__all__ = ["ceil_div_ste", "floor_pow2_ste", "floor_ste", "gate_ste", "round_ste"]
