# SPDX-License-Identifier: Apache-2.0
"""The conversion table of torchvision's CNN classifiers: converted (with its costs) or refused.

Every classification network of `torchvision.models` except the transformers (ViT, Swin,
MaxViT) is tried at the smallest size of `sizes` it runs on (32×32 first); each network runs in
a child process with a time limit, so one slow or stuck network is a row saying so and the
table still finishes. Networks whose parameter count (counted on the meta device, for free)
exceeds a limit are a row saying so too. Nothing is left out silently.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass

import torch

from odimo.convert.measure import measure_arch
from odimo.convert.trace import ConversionError
from odimo.hw.platform import Platform

TRANSFORMERS = ("vit_", "swin_", "maxvit")


def cnn_classifiers() -> list[str]:
    """torchvision's classification networks without the transformers, sorted."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    return sorted(n for n in names if not n.startswith(TRANSFORMERS))


@dataclass(frozen=True)
class ZooRow:
    """One network: `status` converted | refused | too big | timeout | error; `size` the input
    side it was tried at; `detail` the refusal or what went wrong; latency in ms."""

    arch: str
    status: str
    size: int
    params_m: float
    detail: str = ""
    layers: int = 0
    all_digital_ms: float = float("nan")
    min_latency_ms: float = float("nan")
    seconds: float = 0.0


def _params_m(arch: str, num_classes: int) -> float:
    """Parameters in millions, counted on the meta device (free); a builder that cannot run
    there (RegNets) is counted from torchvision's weights metadata (1000-class head)."""
    import torchvision

    try:
        with torch.device("meta"):
            net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    except NotImplementedError:
        weights = torchvision.models.get_model_weights(arch)
        return list(weights)[0].meta["num_params"] / 1e6
    return sum(p.numel() for p in net.parameters()) / 1e6


def _try_sizes(arch: str, sizes: tuple[int, ...], num_classes: int, platform: Platform, queue):
    """Child process: measure at the first size the network runs on; put a tuple on `queue`.

    Its stderr goes to /dev/null: shape propagation prints a traceback for each size a network
    does not run on, and the row says what happened."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    torch.set_num_threads(1)
    substitute, status = None, "converted"
    for size in sizes:
        try:
            row = measure_arch(arch, (3, size, size), num_classes, platform, substitute)
        except ConversionError as err:
            if "does not run on an input of size" in str(err) and size != sizes[-1]:
                continue
            if substitute is None and "substitute_activations=relu" in str(err):
                substitute, status = "relu", "converted (ReLU substituted)"
                try:
                    row = measure_arch(arch, (3, size, size), num_classes, platform, substitute)
                except ConversionError as again:
                    queue.put(("refused (also with ReLU substituted)", size, str(again)))
                    return
            else:
                queue.put(("refused", size, str(err)))
                return
        except Exception as err:  # noqa: BLE001 - a table row, not a crash of the whole table
            queue.put(("error", size, f"{type(err).__name__}: {err}".splitlines()[0]))
            return
        digital, fastest = row.baselines["all_digital"][0], row.baselines["min_latency"][0]
        queue.put((status, size, "", row.layers, digital, fastest))
        return


def zoo_row(
    arch: str,
    sizes: tuple[int, ...],
    num_classes: int,
    platform: Platform,
    timeout_s: float,
    max_params_m: float,
) -> ZooRow:
    """Measure one network in a child process (killed after `timeout_s`)."""
    params = _params_m(arch, num_classes)
    if params > max_params_m:
        detail = f"{params:.0f} M parameters > max_params_m={max_params_m:g}"
        return ZooRow(arch, "too big", sizes[0], params, detail)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start = time.perf_counter()
    child = ctx.Process(target=_try_sizes, args=(arch, sizes, num_classes, platform, queue))
    child.start()
    child.join(timeout_s)
    seconds = time.perf_counter() - start
    if child.is_alive():
        child.kill()
        child.join()
        return ZooRow(arch, "timeout", sizes[0], params, f"over {timeout_s:g} s", seconds=seconds)
    if queue.empty():
        detail = f"the measuring process died (exit code {child.exitcode})"
        return ZooRow(arch, "error", sizes[0], params, detail, seconds=seconds)
    status, size, detail, *cost = queue.get()
    if not status.startswith("converted"):
        return ZooRow(arch, status, size, params, detail, seconds=seconds)
    layers, digital, fastest = cost
    return ZooRow(arch, status, size, params, "", layers, digital, fastest, seconds)


def zoo_table(
    sizes: tuple[int, ...],
    num_classes: int,
    platform: Platform,
    timeout_s: float,
    max_params_m: float,
) -> list[ZooRow]:
    """One row per CNN classifier of torchvision (a progress line each)."""
    rows = []
    for arch in cnn_classifiers():
        row = zoo_row(arch, tuple(sizes), num_classes, platform, timeout_s, max_params_m)
        print(f"{arch}: {row.status} at {row.size}x{row.size} ({row.seconds:.0f} s)", flush=True)
        rows.append(row)
    return rows


def format_zoo(rows: list[ZooRow]) -> str:
    """A Markdown table: one row per network."""
    lines = [
        "| network | M params | input | result | layers | all-digital ms | min-latency ms "
        "| ratio | why not |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.status.startswith("converted"):
            costs = (
                f"{r.layers} | {r.all_digital_ms:.3f} | {r.min_latency_ms:.3f} | "
                f"{r.all_digital_ms / r.min_latency_ms:.2f}×"
            )
        else:
            costs = "- | - | - | -"
        why = _short_reason(r.detail)
        size = f"{r.size}×{r.size}"
        lines.append(f"| {r.arch} | {r.params_m:.1f} | {size} | {r.status} | {costs} | {why} |")
    return "\n".join(lines)


def _short_reason(detail: str, limit: int = 160) -> str:
    """The refusal without the hint after the operation (the table names the op and why)."""
    text = detail.replace("cannot convert node ", "node ").replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"
