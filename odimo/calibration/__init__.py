# SPDX-License-Identifier: Apache-2.0
"""Calibration: fit a platform's cost-model constants to measured per-layer cycles and energy."""
