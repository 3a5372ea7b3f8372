# SPDX-License-Identifier: Apache-2.0
"""The latency harness: statistics by hand, warm-up discarded, threads and mode restored."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from odimo.characterization.timing import host_info, measure_latency, summarize


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


def test_summary_statistics_by_hand():
    stats = summarize(
        [0.001, 0.002, 0.003, 0.004, 0.100], warmup=0, threads=1, device="cpu", load_1min=0.0
    )
    assert stats.median_ms == pytest.approx(3.0)
    assert stats.mean_ms == pytest.approx(22.0)
    assert stats.p95_ms == pytest.approx(4 + 0.8 * 96)  # linear interpolation at rank 3.8
    assert stats.std_ms == pytest.approx(np.std([1, 2, 3, 4, 100], ddof=1))
    assert stats.min_ms == pytest.approx(1.0) and stats.repeats == 5


def test_warmup_is_discarded_and_each_repeat_is_timed_with_the_clock():
    starts_stops = [0.0, 0.002, 0.010, 0.012, 0.020, 0.022, 0.030, 0.040]
    ticks = iter(starts_stops)
    model = Counter()
    stats = measure_latency(model, torch.zeros(1), repeats=4, warmup=3, clock=lambda: next(ticks))
    assert model.calls == 7
    assert stats.median_ms == pytest.approx(2.0) and stats.mean_ms == pytest.approx(4.0)
    assert stats.repeats == 4 and stats.warmup == 3


def test_threads_and_training_mode_are_restored():
    before = torch.get_num_threads()
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).train()
    seen = []
    model.register_forward_hook(lambda m, a, o: seen.append((torch.get_num_threads(), m.training)))
    measure_latency(model, torch.zeros(2, 4), repeats=2, warmup=1, threads=2)
    assert set(seen) == {(2, False)}
    assert torch.get_num_threads() == before and model.training


def test_a_sleeping_module_measures_its_sleep():
    class Sleep(nn.Module):
        def forward(self, x):
            time.sleep(0.003)
            return x

    stats = measure_latency(Sleep(), [torch.zeros(1)], repeats=5, warmup=1)
    # a sleep is never shorter than asked; a starved process may wake up much later
    assert stats.min_ms >= 2.9 and stats.p95_ms >= stats.median_ms >= stats.min_ms


def test_bad_settings_and_host_details():
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(Counter(), torch.zeros(1), repeats=0)
    info = host_info(threads=1)
    assert info["threads"] == 1 and info["torch"] == torch.__version__ and info["cpu"]


def test_an_exported_split_network_is_timed_like_any_module():
    from odimo.export.channel_plan import split_model
    from odimo.hw import get_platform
    from odimo.models import ModelSpec, build_model
    from odimo.nn.baselines import baseline_mapping
    from odimo.nn.mapping import apply_mapping

    platform = get_platform("diana")
    spec = ModelSpec("sampled", (3, 16, 16), 10, (("id", 2), ("law", "s3"), ("space", "probe")))
    mapped = build_model(spec, "mapped", platform)
    apply_mapping(mapped, baseline_mapping("io_digital", _geometry(mapped), platform))
    split = split_model(mapped, platform)
    stats = measure_latency(split, torch.zeros(1, 3, 16, 16), repeats=3, warmup=1)
    assert stats.repeats == 3 and 0 < stats.min_ms <= stats.median_ms <= stats.p95_ms


def _geometry(model):
    from odimo.hw import record_geometry

    return record_geometry(model, (3, 16, 16))


def test_interleaved_timing_is_a_seeded_permutation_per_round():
    """Each network is timed once per round, in a new seeded random order (not plan order);
    the reported latency is the median of its rounds."""
    import random

    from odimo.characterization.timing import busy_others, measure_interleaved

    calls: list[str] = []
    ticks = iter(range(10_000))
    keys = [f"net{i}" for i in range(6)]  # plan order
    items = {k: (lambda x, k=k: calls.append(k), (torch.zeros(1),)) for k in keys}
    stats = measure_interleaved(
        items, rounds=4, warmup=2, threads=1, seed=7, clock=lambda: float(next(ticks))
    )
    assert calls[:12] == [k for k in keys for _ in range(2)]  # warm-up passes, plan order
    timed = calls[12:]
    assert len(timed) == 4 * 6 * 2
    assert timed[0::2] == timed[1::2]  # a discarded pass right before each timed one
    rng = random.Random(7)
    expected = [k for _ in range(4) for k in rng.sample(keys, 6)]
    assert timed[0::2] == expected
    rounds = [expected[i : i + 6] for i in range(0, 24, 6)]
    assert all(sorted(r) == keys for r in rounds) and rounds[0] != keys and rounds[0] != rounds[1]
    # the fake clock advances one tick per read: every timed pass lasts 1 s
    assert all(s.median_ms == pytest.approx(1e3) and s.repeats == 4 for s in stats.values())
    assert stats["net0"].load_1min == stats["net5"].load_1min  # one load for all networks
    assert np.isnan(busy_others(None, (1.0, 1.0, 1.0)))  # not reported: NaN, not 0


def test_busy_others_subtracts_the_own_process():
    import os

    from odimo.characterization.timing import busy_others

    cores = os.cpu_count() or 1
    # 10 s wall; host busy 10·cores/2 s, of which 5 s were ours
    start, end = (0.0, 0.0, 0.0), (10.0, 10.0 * cores / 2, 5.0)
    assert busy_others(start, end) == pytest.approx((10.0 * cores / 2 - 5.0) / (10.0 * cores))
