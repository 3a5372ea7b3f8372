# SPDX-License-Identifier: Apache-2.0
"""Bring your own network: torch.fx conversion of any CNN into odimo's float, search and mapped
forms (`model=torchvision model.arch=<name>`, `model=custom model.target=<module:factory>`)."""

from odimo.convert.convert import Conversion, analyse, convert
from odimo.convert.layers import LinearAsConv2d
from odimo.convert.trace import ConversionError

__all__ = ["Conversion", "ConversionError", "LinearAsConv2d", "analyse", "convert"]
