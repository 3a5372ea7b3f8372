# SPDX-License-Identifier: Apache-2.0
"""Target projection: hand the fine-tune a mapping whose hard cost sits at the target.

A target-mode search (`reg.target_ms` / `reg.target_uj`) penalises only the cost above the
target, so its argmax mapping ends near it but rarely on it: with hard sampling whole layers
flip at once, and a short search either stops above the target or overshoots below it. The
hand-over then projects the searched mapping onto the target, letting α decide which channels
move:

- **repair** (cost above the target): every layer can move channels either way (on DIANA a
  layer with few analog channels is often cheaper all-digital, as the analog unit has a fixed
  weight-load cost); each step is the layer move that saves cost at the least α regret per
  unit of cost saved (the regret of a channel is how much its α prefers the unit it leaves),
  until the cost meets the target. A step may move several channels of a layer at once, to
  cross a plateau of the layer's cost (DIANA's digital cost drops in steps of 16 channels).
- **spend** (what is left below the target, after a repair or instead of one): channels move
  from the cheap unit to the precise one while the cost stays within the target, the moves
  that buy most channels per unit of added cost first and, inside a layer, the channels whose
  α is closest to choosing the precise unit first.

If repair runs out of moves that lower the cost (the target is below the network's minimum),
the mapping stops at the cheapest point reached and the report says the target is not met.
"""

from __future__ import annotations

import torch

from odimo.nn.baselines import move_costs
from odimo.nn.conv import SearchConv2d
from odimo.nn.network_cost import NetworkCost

_TOL = 1e-9


def _layer_options(network: NetworkCost, regularizer, precise: int, cheap: int) -> list[dict]:
    """Per search layer: its cost and α regret as functions of its channel count on `precise`.

    A layer with d0 channels on the precise unit can go to any d in [0, n] (n: its channels on
    either unit): down, the precise channels least attached to it leave first; up, the cheap
    channels least attached to the cheap unit join first. The regret of d is the summed α
    attachment of the channels moved (0 at d0).
    """
    out = []
    platform = network.platform
    for i, layer in enumerate(network.layers):
        if not isinstance(layer, SearchConv2d):
            continue
        if precise not in layer.allowed_units or cheap not in layer.allowed_units:
            continue
        assign = layer.hard_assignment().cpu()
        alpha = layer.alpha.detach().double().cpu()
        on_p = torch.nonzero(assign == precise).flatten()
        on_c = torch.nonzero(assign == cheap).flatten()
        stay_p = (alpha[precise] - alpha[cheap])[on_p]  # how much α prefers staying
        stay_c = (alpha[cheap] - alpha[precise])[on_c]
        down, up = torch.argsort(stay_p, stable=True), torch.argsort(stay_c, stable=True)
        d0, n = on_p.numel(), on_p.numel() + on_c.numel()
        if n == 0:
            continue
        start = layer.unit_counts(soft=False).detach().double().cpu()
        start[precise], start[cheap] = 0.0, float(n)  # row d: d channels on `precise`
        cost = regularizer.layer_hard(
            move_costs(network.geometry[i], platform, start, cheap, precise)
        )
        zero = torch.zeros(1, dtype=torch.float64)
        regret = torch.cat([stay_p[down].cumsum(0).flip(0), zero, stay_c[up].cumsum(0)])
        out.append(
            {
                "layer": layer,
                "name": network.names[i],
                "on_p": on_p[down],
                "on_c": on_c[up],
                "cost": cost,
                "regret": regret,
                "d0": d0,
                "d": d0,
            }
        )
    return out


def _best_repair_step(options: list[dict]) -> tuple[dict, int] | None:
    """The layer move that saves cost at the least α regret per cost saved, or None."""
    best, best_rate = None, float("inf")
    for o in options:
        d, cost, regret = o["d"], o["cost"], o["regret"]
        saved = cost[d] - cost
        ok = saved > cost[d].abs() * _TOL + 1e-12
        if not bool(ok.any()):
            continue
        rate = (regret - regret[d]) / saved.clamp_min(1e-12)
        rate[~ok] = float("inf")
        j = int(torch.argmin(rate))
        if float(rate[j]) < best_rate:
            best, best_rate = (o, j), float(rate[j])
    return best


def _best_spend_step(options: list[dict], room: float) -> tuple[dict, int] | None:
    """The move to the precise unit that buys most channels per added cost within `room`."""
    best, best_key = None, None
    for o in options:
        d, cost = o["d"], o["cost"]
        added = cost[d + 1 :] - cost[d]
        if added.numel() == 0:
            continue
        steps = torch.arange(1, added.numel() + 1, dtype=torch.float64)
        fits = added <= room + abs(room) * _TOL + 1e-9
        if not bool(fits.any()):
            continue
        # moves that add no cost first (as many channels as possible), then channels per cost
        rate = torch.where(added <= 1e-12, steps * 1e30, steps / added.clamp_min(1e-12))
        rate[~fits] = -1.0
        j = int(torch.argmax(rate))
        key = (float(rate[j]), j + 1)
        if best_key is None or key > best_key:
            best, best_key = (o, d + 1 + j), key
    return best


@torch.no_grad()
def project_to_target(network: NetworkCost, regularizer, target: float) -> dict:
    """Move channels so the hard cost of `regularizer` lands at or just below `target`.

    Edits α of the moved channels (their argmax becomes the new unit) and returns a report:
    direction, cost before and after, whether the target is met, channels moved per layer.
    """
    platform = network.platform
    precise, cheap = platform.precise_unit_index(), platform.cheap_unit_index()
    before = regularizer.hard_cost(network)
    options = _layer_options(network, regularizer, precise, cheap)
    total = before
    repair = before > target * (1 + _TOL)
    while repair and total > target * (1 + _TOL):
        step = _best_repair_step(options)
        if step is None:
            break
        o, d = step
        total += float(o["cost"][d] - o["cost"][o["d"]])
        o["d"] = d
    while total <= target * (1 + _TOL):  # spend what is left of the room
        step = _best_spend_step(options, target - total)
        if step is None:
            break
        o, d = step
        total += float(o["cost"][d] - o["cost"][o["d"]])
        o["d"] = d
    moved: dict[str, int] = {}
    for o in options:
        shift = o["d"] - o["d0"]
        if shift == 0:
            continue
        if shift > 0:
            chosen, dest = o["on_c"][:shift], precise
        else:
            chosen, dest = o["on_p"][:-shift], cheap
        alpha = o["layer"].alpha
        chosen = chosen.to(alpha.device)
        alpha[dest, chosen] = alpha[:, chosen].max(0).values + 1e-3
        moved[o["name"]] = shift
    after = regularizer.hard_cost(network)
    return {
        "direction": "repair" if repair else "spend",
        "cost_before": before,
        "cost_after": after,
        "target": float(target),
        "met": after <= target * (1 + _TOL),
        "channels_to_precise": {k: v for k, v in moved.items() if v > 0},
        "channels_to_cheap": {k: -v for k, v in moved.items() if v < 0},
    }
