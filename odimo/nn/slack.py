# SPDX-License-Identifier: Apache-2.0
"""Slack filling: give the precise unit every channel it can take at no extra cost.

Below 512 output channels DIANA's analog cost of a layer is flat, and the latency of a layer is
the max of its units, so a layer mapped mostly to the analog core can often move several
channels to the 8-bit digital core without any cost: the `min_latency_max8` heuristic does this
for whole-analog layers. A searched mapping gets no gradient for that slack (the max passes
gradient only to the slower unit), so the hand-over fills it explicitly: in each searched layer,
the largest number of channels moves from the cheap unit to the precise one such that the
layer's cost (latency or energy) does not rise; the channels moved are those whose α is closest
to choosing the precise unit.
"""

from __future__ import annotations

import torch

from odimo.nn.baselines import free_moves
from odimo.nn.conv import SearchConv2d
from odimo.nn.network_cost import NetworkCost

OBJECTIVES = ("latency", "energy")


@torch.no_grad()
def fill_slack(
    network: NetworkCost,
    objective: str = "latency",
    precise: str | None = None,
    cheap: str | None = None,
) -> dict[str, int]:
    """Move channels of every search layer from `cheap` to `precise` while its cost holds.

    Edits α of the moved channels so their argmax becomes the precise unit; returns the
    number of channels moved per layer (layers with none moved are left out).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    platform = network.platform
    acc = platform.unit_index(precise) if precise else platform.precise_unit_index()
    chp = platform.unit_index(cheap) if cheap else platform.cheap_unit_index()
    moved: dict[str, int] = {}
    for i, (name, layer) in enumerate(zip(network.names, network.layers)):
        if not isinstance(layer, SearchConv2d):
            continue
        if acc not in layer.allowed_units or chp not in layer.allowed_units:
            continue
        counts = layer.unit_counts(soft=False).double().cpu()
        take = free_moves(network.geometry[i], platform, counts, chp, acc, objective)
        if take == 0:
            continue
        alpha = layer.alpha
        on_cheap = torch.nonzero(layer.hard_assignment() == chp).flatten()
        preference = (alpha[acc] - alpha[chp])[on_cheap]
        chosen = on_cheap[torch.argsort(preference, descending=True)[:take]]
        alpha[acc, chosen] = alpha[:, chosen].max(0).values + 1e-3
        moved[name] = take
    return moved
