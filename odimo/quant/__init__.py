# SPDX-License-Identifier: Apache-2.0
"""Quantizers: PaCT activations, per-unit weight quantizers, integer bias, quantized add/pool."""

from odimo.quant import fused
from odimo.quant.activation import Uint7ActPact, UintActPact
from odimo.quant.ops import FloatAdd, FloatAvgPool2d, QuantAdd, QuantAvgPool2d
from odimo.quant.weight import (
    WEIGHT_QUANTIZERS,
    Int8WeightPow2,
    Int16Bias,
    TernaryWeightPerChannel,
    ternary_lsq_scale,
)

__all__ = [
    "WEIGHT_QUANTIZERS",
    "FloatAdd",
    "FloatAvgPool2d",
    "Int8WeightPow2",
    "Int16Bias",
    "QuantAdd",
    "QuantAvgPool2d",
    "TernaryWeightPerChannel",
    "Uint7ActPact",
    "UintActPact",
    "fused",
    "ternary_lsq_scale",
]
