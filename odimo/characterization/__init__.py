# SPDX-License-Identifier: Apache-2.0
"""Hardware characterization: measure candidate networks before training (host latency, size,
MACs, platform costs) into a catalogue, and train the ones worth it."""

from odimo.characterization.timing import LatencyStats, host_info, measure_latency

__all__ = ["LatencyStats", "host_info", "measure_latency"]
