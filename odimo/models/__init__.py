# SPDX-License-Identifier: Apache-2.0
"""The paper's three networks in float, search and mapped form."""

from odimo.models.build import (
    MODELS,
    ModelSpec,
    build_model,
    fold_float_into,
    is_quantized,
    model_spec,
    searchable_names,
    to_mapped,
)
from odimo.models.io import load_mapped, save_mapped
from odimo.nn.factory import FORMS

__all__ = [
    "FORMS",
    "MODELS",
    "ModelSpec",
    "build_model",
    "fold_float_into",
    "is_quantized",
    "load_mapped",
    "model_spec",
    "save_mapped",
    "searchable_names",
    "to_mapped",
]
