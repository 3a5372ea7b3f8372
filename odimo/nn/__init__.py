# SPDX-License-Identifier: Apache-2.0
"""Layers that split output channels between compute units, mappings, and network costs."""

from odimo.nn.conv import (
    ALPHA_INIT,
    SAMPLING,
    Conv2dBN,
    MappedConv2d,
    QuantConv2d,
    SearchConv2d,
    hard_mapping,
    polarization,
    search_layers,
    set_sampling,
    set_temperature,
)
from odimo.nn.mapping import Mapping, apply_mapping, model_mapping, quant_layers
from odimo.nn.network_cost import (
    REGULARIZERS,
    EnergyRegularizer,
    LatencyRegularizer,
    NaiveEnergyRegularizer,
    NetworkCost,
    NoRegularizer,
    Regularizer,
    TargetRegularizer,
    make_regularizer,
)

__all__ = [
    "ALPHA_INIT",
    "REGULARIZERS",
    "SAMPLING",
    "Conv2dBN",
    "EnergyRegularizer",
    "LatencyRegularizer",
    "MappedConv2d",
    "Mapping",
    "NaiveEnergyRegularizer",
    "NetworkCost",
    "NoRegularizer",
    "QuantConv2d",
    "Regularizer",
    "SearchConv2d",
    "TargetRegularizer",
    "apply_mapping",
    "hard_mapping",
    "make_regularizer",
    "model_mapping",
    "polarization",
    "quant_layers",
    "search_layers",
    "set_sampling",
    "set_temperature",
]
