# SPDX-License-Identifier: Apache-2.0
"""Conversion tests run the eager quantizer kernels (compiling them costs more than the tests)."""

from __future__ import annotations

import pytest

from odimo.quant import fused


@pytest.fixture(autouse=True)
def _eager_quantizers():
    previous = fused.fused_enabled()
    fused.set_fused(False)
    yield
    fused.set_fused(previous)
