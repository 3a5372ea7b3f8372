# SPDX-License-Identifier: Apache-2.0
"""Speed of the vectorised threshold sweep against the naive one-threshold-at-a-time loop.

`python -m odimo.cascade.sweep_speed --samples 10000 --thresholds 2000` prints both times (best of
`--repeats`) and their ratio, after checking that both give the same curve.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from odimo.cascade.routing import pair_outputs, sweep, sweep_naive, threshold_grid


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of `repeats` wall-clock runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_sweep(samples: int, thresholds: int, repeats: int = 3, seed: int = 0) -> dict:
    """Time both sweeps on random 10-class logits; returns the times and their ratio."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, samples)
    little, big = rng.normal(size=(2, samples, 10))
    little[np.arange(samples), labels] += 1.5
    big[np.arange(samples), labels] += 3.0
    outputs = pair_outputs(little, big, labels, "maxp", postcheck=True)
    grid = threshold_grid(thresholds)
    fast, slow = sweep(outputs, grid), sweep_naive(outputs, grid)
    if not (np.allclose(fast[0], slow[0], atol=1e-12) and np.array_equal(fast[1], slow[1])):
        raise AssertionError("vectorised and naive sweeps disagree")
    t_fast = best_time(lambda: sweep(outputs, grid), repeats)
    t_slow = best_time(lambda: sweep_naive(outputs, grid), repeats)
    return {
        "samples": samples,
        "thresholds": thresholds,
        "vectorised_s": t_fast,
        "naive_s": t_slow,
        "speedup": t_slow / t_fast,
    }


def main(argv: list[str] | None = None) -> None:
    """Command line: print the two times and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000, help="inputs in the split")
    parser.add_argument("--thresholds", type=int, default=2000, help="thresholds in [0, 1]")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method (best kept)")
    args = parser.parse_args(argv)
    r = bench_sweep(args.samples, args.thresholds, args.repeats)
    print(
        f"{r['samples']} samples x {r['thresholds']} thresholds: vectorised "
        f"{1e3 * r['vectorised_s']:.2f} ms, naive loop {1e3 * r['naive_s']:.1f} ms, "
        f"{r['speedup']:.0f}x faster (same curve)"
    )


if __name__ == "__main__":
    main()
