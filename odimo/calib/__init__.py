# SPDX-License-Identifier: Apache-2.0
"""Hardware characterization and calibration: latency harness, catalogues, cost-model fits."""

from odimo.calib.harness import LatencyStats, host_info, measure_latency

__all__ = ["LatencyStats", "host_info", "measure_latency"]
