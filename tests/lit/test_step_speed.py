# SPDX-License-Identifier: Apache-2.0
"""The benchmark's interleaved timing: rounds in a random order, ratios taken round by round."""

from __future__ import annotations

import statistics

import pytest

from odimo.lit.step_speed import ROUNDS, step_speeds, time_interleaved

#: Seconds one step of each item costs on an idle host.
COST = {"float": 1.0, "search": 1.25, "finetune": 1.1, "cost": 0.01}
WARMUP, BLOCK = 2, 2


class LoadedHost:
    """A fake clock on a host whose load rises every round: a step advances the clock by its
    item's cost times the load of the round it runs in (round r: load r + 1)."""

    def __init__(self):
        self.now, self.calls = 0.0, []

    def clock(self) -> float:
        return self.now

    def item(self, name: str):
        def step() -> None:
            timed = len(self.calls) - WARMUP * len(COST)
            load = 1 + max(0, timed) // (BLOCK * len(COST))
            self.calls.append(name)
            self.now += COST[name] * load

        return step


def test_rounds_run_every_item_once_in_a_new_order():
    host = LoadedHost()
    items = {name: host.item(name) for name in COST}
    seconds = time_interleaved(
        items, steps=BLOCK * ROUNDS, warmup=WARMUP, sync=lambda: None, clock=host.clock
    )
    assert {k: len(v) for k, v in seconds.items()} == {k: ROUNDS for k in COST}
    assert host.calls[: WARMUP * len(COST)] == [n for n in COST for _ in range(WARMUP)]
    timed = host.calls[WARMUP * len(COST) :]
    blocks = [timed[i : i + BLOCK] for i in range(0, len(timed), BLOCK)]
    assert len(blocks) == ROUNDS * len(COST) and all(len(set(b)) == 1 for b in blocks)
    k = len(COST)
    orders = [tuple(b[0] for b in blocks[r : r + k]) for r in range(0, len(blocks), k)]
    assert all(sorted(o) == sorted(COST) for o in orders)  # each round: every item once
    assert len(set(orders)) > 1  # ... in an order that changes (seeded: the same every run)
    again = LoadedHost()
    time_interleaved(
        {n: again.item(n) for n in COST}, BLOCK * ROUNDS, WARMUP, lambda: None, clock=again.clock
    )
    assert again.calls == host.calls
    # value r of every item is its block of round r, at that round's load
    for name, values in seconds.items():
        assert values == pytest.approx([COST[name] * (r + 1) for r in range(ROUNDS)])
    speeds = step_speeds(seconds, batch_size=8)
    assert speeds["search_ratio"] == pytest.approx(0.8)
    assert speeds["finetune_ratio"] == pytest.approx(1 / 1.1)
    assert speeds["cost_ratio"] == pytest.approx(0.01)
    float_img_s = statistics.median(8 / s for s in seconds["float"])
    assert speeds["float_img_s"] == pytest.approx(float_img_s)


def test_step_speeds_pairs_blocks_of_the_same_round():
    # a load burst hit the search's block of round 1 but not the float step's; round 2 was busy
    # for both: paired, the search runs at 0.8 of the float step (a ratio of the two medians
    # would say 1.0 / 3.75 = 0.27)
    seconds = {
        "float": [1.0, 1.0, 3.0],
        "search": [1.25, 3.75, 3.75],
        "finetune": [1.1, 1.1, 3.3],
        "cost": [0.02, 0.02, 0.06],
    }
    speeds = step_speeds(seconds, batch_size=10)
    assert speeds["search_ratio"] == pytest.approx(0.8)
    assert speeds["finetune_ratio"] == pytest.approx(1 / 1.1)
    assert speeds["cost_ratio"] == pytest.approx(0.02)
    assert speeds["search_img_s"] == pytest.approx(10 / 3.75)  # throughput: median of 10 / s
