# SPDX-License-Identifier: Apache-2.0
"""The benchmark's interleaved timing (rounds in a random order, ratios taken round by round,
blocks of whole re-fit periods) and its chip variants' steps."""

from __future__ import annotations

import statistics

import pytest
import torch
from omegaconf import OmegaConf

from odimo.hw import get_platform, with_analog
from odimo.lit.step_speed import (
    CHIP_VARIANTS,
    ROUNDS,
    build_variants,
    resolve_spec,
    step_speeds,
    time_interleaved,
)
from odimo.quant.adc import AnalogReadout, readouts
from tests.tasks.helpers import CONF

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


def test_blocks_are_whole_periods_and_restart_follows_the_warm_up():
    """With periodic work (the read-out's re-fits), every block is a whole number of periods
    and the items restart their period after the warm-up: each block carries the work once per
    period, as training does."""
    host = LoadedHost()
    events = []
    items = {}
    for name in COST:
        step = host.item(name)
        items[name] = lambda step=step, name=name: events.append(name) or step()
    seconds = time_interleaved(
        items,
        steps=BLOCK * ROUNDS,
        warmup=WARMUP,
        sync=lambda: None,
        clock=host.clock,
        period=3,
        restart=lambda: events.append("restart"),
    )
    block = 3  # ceil(2 / 3) periods of 3 steps
    rounds = -(-BLOCK * ROUNDS // block)  # at least BLOCK * ROUNDS steps per item
    assert {k: len(v) for k, v in seconds.items()} == {k: rounds for k in COST}
    assert events.index("restart") == WARMUP * len(COST) and events.count("restart") == 1
    timed = events[WARMUP * len(COST) + 1 :]
    assert len(timed) == rounds * block * len(COST)
    blocks = [timed[i : i + block] for i in range(0, len(timed), block)]
    assert all(len(set(b)) == 1 for b in blocks)


def test_chip_variants_refit_every_period_and_the_noise_ones_draw(monkeypatch):
    """The chip variants' step re-fits the gains on the first step of every period (after a
    restart), the plain ones have none to re-fit; the `_noise` variants train under the chip's
    deployment noise, drawn afresh every step, the others noiselessly."""
    chip = get_platform(OmegaConf.load(CONF / "platform" / "diana.yaml"))
    spec = resolve_spec("res20", [3, 8, 8])
    torch.manual_seed(0)
    variants, _ = build_variants(
        spec, with_analog(chip, None), "latency", 1e-6, torch.device("cpu"), False, chip,
        recalibrate_every=3,
    )  # fmt: skip
    assert set(CHIP_VARIANTS) <= set(variants)
    batch = (torch.rand(4, 3, 8, 8), torch.randint(0, 10, (4,)))
    resets = {}
    reset = AnalogReadout.reset
    monkeypatch.setattr(
        AnalogReadout, "reset", lambda r: resets.__setitem__(id(r), resets.get(id(r), 0) + 1)
        or reset(r),
    )  # fmt: skip
    for name, v in variants.items():
        v.step(batch)  # mid-period: then a restart, as after the benchmark's warm-up
        v.restart()
        before = dict(resets)
        for _ in range(7):  # steps 1, 4 and 7 of the period start it
            v.step(batch)
        counts = {
            id(r): resets.get(id(r), 0) - before.get(id(r), 0) for r in readouts(v.module.model)
        }
        if name in CHIP_VARIANTS:
            assert counts and set(counts.values()) == {3}, name
        else:
            assert not counts, name
    noisy = variants["finetune_chip_noise"].module
    assert all(r.noise == chip.analog.noise for r in readouts(noisy.model))
    assert all(r.noise is None for r in readouts(variants["finetune_chip"].module.model))
    with torch.no_grad():
        assert not torch.equal(noisy.model(batch[0]), noisy.model(batch[0]))  # fresh draws
