# SPDX-License-Identifier: Apache-2.0
"""Inference latency of any module on the host: warm-up discarded, fixed threads, N repeats.

Each repetition is timed with `time.perf_counter` around one forward pass under
`torch.inference_mode`; on CUDA the device is synchronised before reading the clock. The result
holds mean, std, median and p95 in milliseconds, plus the thread count and the 1-minute load
average at the start and end: on a shared machine the median and p95 are the numbers to quote,
and the load says how noisy they are.
"""

from __future__ import annotations

import os
import platform as host_platform
import random
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class LatencyStats:
    """Latency of `repeats` timed forward passes, in milliseconds."""

    mean_ms: float
    std_ms: float
    median_ms: float
    p95_ms: float
    min_ms: float
    repeats: int
    warmup: int
    threads: int
    device: str
    load_1min: float
    #: Share of the host's CPU time used by other processes during the measurement (0..1).
    busy_others: float = float("nan")

    def as_dict(self) -> dict:
        return asdict(self)


@contextmanager
def fixed_threads(threads: int):
    """Run the block with `threads` intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _load() -> float:
    """1-minute load average (NaN where the OS does not report one)."""
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return float("nan")


def summarize(times_s: Sequence[float], **info) -> LatencyStats:
    """Statistics of per-repetition times in seconds (sample std, linear-interpolated p95)."""
    ms = np.asarray(times_s, dtype=float) * 1e3
    return LatencyStats(
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        median_ms=float(np.median(ms)),
        p95_ms=float(np.percentile(ms, 95)),
        min_ms=float(ms.min()),
        repeats=int(ms.size),
        **info,
    )


def measure_latency(
    model: nn.Module | Callable[..., object],
    inputs: Tensor | Sequence[Tensor],
    *,
    repeats: int = 30,
    warmup: int = 5,
    threads: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> LatencyStats:
    """Time `model(*inputs)`: `warmup` passes discarded, then `repeats` timed passes.

    Args:
        model: any module or callable (a sampled net, an exported split network, a cascade);
            a module is put in eval mode for the measurement and restored afterwards.
        inputs: one tensor or a sequence of tensors, already on the device to time.
        repeats: timed passes (>= 1).
        warmup: discarded passes before timing (>= 0).
        threads: intra-op CPU threads during the measurement.
        clock: the timer (seconds); injectable for tests.
    """
    if repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError(
            f"need repeats >= 1, warmup >= 0, threads >= 1; got {repeats}, {warmup}, {threads}"
        )
    args = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    device = args[0].device if args else torch.device("cpu")
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    was_training = getattr(model, "training", None)
    if isinstance(model, nn.Module):
        model.eval()
    load = _load()
    times = []
    try:
        with fixed_threads(threads), torch.inference_mode():
            for _ in range(warmup):
                model(*args)
            sync()
            for _ in range(repeats):
                start = clock()
                model(*args)
                sync()
                times.append(clock() - start)
    finally:
        if isinstance(model, nn.Module) and was_training:
            model.train()
    load = max(load, _load())
    return summarize(times, warmup=warmup, threads=threads, device=str(device), load_1min=load)


def cpu_counters() -> tuple[float, float, float] | None:
    """(wall s, busy CPU s of the whole host, CPU s of this process); None without /proc/stat."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    tick = float(os.sysconf("SC_CLK_TCK"))
    return time.perf_counter(), (sum(fields[:8]) - idle) / tick, time.process_time()


def busy_others(start, end) -> float:
    """Share of all cores' time that OTHER processes kept busy between two `cpu_counters()`
    (NaN where the OS does not report it): the load that the measurement competed with."""
    if start is None or end is None or end[0] <= start[0]:
        return float("nan")
    others = (end[1] - start[1]) - (end[2] - start[2])
    return min(max(others / ((end[0] - start[0]) * (os.cpu_count() or 1)), 0.0), 1.0)


def _device(args: Sequence[Tensor]) -> torch.device:
    return args[0].device if args else torch.device("cpu")


def _rounds(items, devices, rounds, warmup, rng, clock) -> tuple[dict[str, list[float]], float]:
    """Per-network times (s) of the timed passes, and the highest load average seen."""

    def sync(key: str) -> None:
        if devices[key].type == "cuda":
            torch.cuda.synchronize(devices[key])

    keys, load = list(items), _load()
    times: dict[str, list[float]] = {k: [] for k in keys}
    for key in keys:
        model, args = items[key]
        for _ in range(warmup):
            model(*args)
        sync(key)
    for _ in range(rounds):
        for key in rng.sample(keys, len(keys)):
            model, args = items[key]
            model(*args)  # discarded: the network's weights back in the caches
            sync(key)
            began = clock()
            model(*args)
            sync(key)
            times[key].append(clock() - began)
        load = max(load, _load())
    return times, load


def measure_interleaved(
    items: dict[str, tuple[Callable[..., object], Sequence[Tensor]]],
    *,
    rounds: int = 30,
    warmup: int = 5,
    threads: int = 1,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, LatencyStats]:
    """Time several networks against each other: `rounds` rounds, each network timed once per
    round, in a new seeded random order every round; the median over rounds is the latency.

    Drift of the host's load during the measurement then hits every network alike instead of
    lining up with the plan order (space, law, id). Each network first runs `warmup` discarded
    passes; in every round it runs one discarded pass (its weights back in the caches) right
    before its timed one. All networks share the round's load figures: `load_1min` (the highest
    1-minute load average seen) and `busy_others` (other processes' CPU share over the rounds).
    """
    if rounds < 1 or warmup < 0 or threads < 1:
        raise ValueError(
            f"need rounds >= 1, warmup >= 0, threads >= 1; got {rounds}, {warmup}, {threads}"
        )
    keys = list(items)
    devices = {k: _device(args) for k, (_, args) in items.items()}
    modes = {k: getattr(m, "training", None) for k, (m, _) in items.items()}
    for model, _ in items.values():
        if isinstance(model, nn.Module):
            model.eval()
    start = cpu_counters()
    try:
        with fixed_threads(threads), torch.inference_mode():
            times, load = _rounds(items, devices, rounds, warmup, random.Random(seed), clock)
    finally:
        for key, (model, _) in items.items():
            if isinstance(model, nn.Module) and modes[key]:
                model.train()
    busy = busy_others(start, cpu_counters())
    return {
        key: summarize(
            times[key],
            warmup=warmup,
            threads=threads,
            device=str(devices[key]),
            load_1min=load,
            busy_others=busy,
        )
        for key in keys
    }


def host_info(threads: int | None = None) -> dict:
    """What the host timings were measured on: CPU model, cores, threads, versions, load."""
    cpu = host_platform.processor() or host_platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "torch": torch.__version__,
        "python": host_platform.python_version(),
        "os": f"{host_platform.system()} {host_platform.release()}",
        "load_1min": _load(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info
