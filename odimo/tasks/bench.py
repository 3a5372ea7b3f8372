# SPDX-License-Identifier: Apache-2.0
"""Speed benchmark: throughput of the search and fine-tune steps relative to a float step.

One process builds the same architecture three times:

- `float`: conv-BN-ReLU trained with SGD (`WarmupModule`, the warm-up phase);
- `search`: the search form folded from the float model, loss = CE + strength·latency, three
  optimizers (`SearchModule`);
- `finetune`: the mapped form under the `min_latency_max8` baseline (both units active in some
  layers), weights and quantizers trained (`FinetuneModule`).

One step is exactly what training runs per batch: `module.losses(batch)` (the loss of
`training_step`), `backward()`, `optimizer.step()`, `optimizer.zero_grad(set_to_none=True)`, on
one fixed random batch already on the device. The variants are timed interleaved (one block of
steps of each in turn, repeated), so that load from other processes hits all of them alike; the
reported throughput is the median over blocks. A fourth timed item is the vectorised cost alone
(`regularizer(network)` forward + backward), reported relative to the float step (`cost_ratio`).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig

from odimo.errors import ConfigError, OdimoError
from odimo.hw import get_platform
from odimo.lit.modules import FinetuneModule, SearchModule, WarmupModule
from odimo.models import ModelSpec, build_model, fold_float_into, searchable_names, to_mapped
from odimo.nn.baselines import baseline_mapping
from odimo.nn.network_cost import NetworkCost, make_regularizer
from odimo.quant import fused

#: Input size [C, H, W] and classes of each model in the paper (its dataset).
PAPER_SIZES: dict[str, tuple[tuple[int, int, int], int]] = {
    "res20": ((3, 32, 32), 10),
    "res18": ((3, 64, 64), 200),
    "mbv1": ((3, 96, 96), 2),
}

#: Mapping of the fine-tune variant: mixed layers (digital and analog channels in one conv).
FINETUNE_MAPPING = "min_latency_max8"

#: Optimizer recipes of the three phases (as conf/train.yaml; the lr values do not change speed).
OPTIM = {
    "float": {"weights": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}},
    "search": {
        "weights": {"name": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4},
        "alpha": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
        "quant": {"name": "sgd", "lr": 1e-5, "momentum": 0.0},
    },
    "finetune": {
        "weights": {"name": "sgd", "lr": 1e-4, "momentum": 0.9, "weight_decay": 1e-4},
        "quant": {"name": "sgd", "lr": 1e-5, "momentum": 0.0},
    },
}

VARIANTS = ("float", "search", "finetune")


def resolve_device(name: str) -> torch.device:
    """`cpu` or `cuda` as a torch device; a one-line error if CUDA is asked for but absent."""
    name = str(name).lower()
    if name == "cuda":
        if not torch.cuda.is_available():
            raise OdimoError("CUDA is not available (use device=cpu)")
        return torch.device("cuda")
    if name != "cpu":
        raise ConfigError(f"unknown device {name!r} (choose from: cpu, cuda)")
    return torch.device("cpu")


def resolve_spec(model: str, input_size, num_classes: int | None = None) -> ModelSpec:
    """Model spec at the paper's input size, or at `input_size` [C, H, W] if given."""
    if model not in PAPER_SIZES:
        raise ConfigError(f"unknown model {model!r} (choose from: {', '.join(PAPER_SIZES)})")
    size, classes = PAPER_SIZES[model]
    if input_size is not None:
        size = tuple(int(v) for v in input_size)
        if len(size) != 3 or min(size) <= 0:
            raise ConfigError(f"input_size must be [C, H, W] of positive ints, got {size}")
    return ModelSpec(model, size, int(num_classes or classes))


class Variant:
    """A model in its LightningModule with its optimizer, and the step that training runs."""

    def __init__(self, name: str, module, optimizer: torch.optim.Optimizer):
        self.name = name
        self.module = module
        self.optimizer = optimizer

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        loss = self.module.losses(batch)[0]
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def build_variants(
    spec: ModelSpec, platform, reg: str, strength: float, device: torch.device, channels_last: bool
) -> tuple[dict[str, Variant], Callable[[], None]]:
    """The three variants on `device`, and the cost forward+backward step of the search one."""
    float_model = build_model(spec, "float")
    search_model = build_model(spec, "search", platform)
    fold_float_into(search_model, float_model)
    network = NetworkCost(search_model, platform, spec.input_size)
    regularizer = make_regularizer(reg, strength)
    mapping = baseline_mapping(
        FINETUNE_MAPPING, network.geometry, platform, searchable_names(search_model)
    )
    mapped_model = to_mapped(search_model, platform, mapping)

    modules = {
        "float": WarmupModule(float_model, spec.num_classes, OPTIM["float"]),
        "search": SearchModule(
            search_model, spec.num_classes, OPTIM["search"], network, regularizer
        ),
        "finetune": FinetuneModule(mapped_model, spec.num_classes, OPTIM["finetune"]),
    }
    variants = {}
    for name, module in modules.items():
        module.to(device)
        if channels_last:
            module.to(memory_format=torch.channels_last)
        module.train()
        variants[name] = Variant(name, module, module.configure_optimizers()["optimizer"])

    alphas = [p for n, p in search_model.named_parameters() if n.endswith(".alpha")]

    def cost_step() -> None:
        regularizer(network).backward()
        for p in alphas:
            p.grad = None

    return variants, cost_step


def try_compile(variants: dict[str, Variant], batch) -> list[str]:
    """Wrap each variant's network with `torch.compile`; keep the eager one where it fails."""
    notes = []
    for v in variants.values():
        eager = v.module.model
        v.module.model = torch.compile(eager)
        try:
            v.step(batch)
        except Exception as err:  # noqa: BLE001 - any compiler failure falls back to eager
            v.module.model = eager
            v.optimizer.zero_grad(set_to_none=True)
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            notes.append(
                f"note: torch.compile failed for {v.name} ({type(err).__name__}: "
                f"{first[:120]}); timing it eagerly"
            )
    return notes


def time_interleaved(
    items: dict[str, Callable[[], None]], steps: int, warmup: int, sync: Callable[[], None]
) -> dict[str, list[float]]:
    """Seconds per step of each item: `warmup` untimed steps each, then round-robin blocks.

    Returns, per item, the mean seconds per step of every block (one value per block).
    """
    for fn in items.values():
        for _ in range(warmup):
            fn()
    sync()
    block = max(1, steps // 5)
    blocks = math.ceil(steps / block)
    out: dict[str, list[float]] = {k: [] for k in items}
    for _ in range(blocks):
        for name, fn in items.items():
            sync()
            start = time.perf_counter()
            for _ in range(block):
                fn()
            sync()
            out[name].append((time.perf_counter() - start) / block)
    return out


def format_table(rows: list[tuple[str, float | None, float, float]]) -> str:
    """Variant, img/s, ms/step, ratio to float."""
    lines = [f"{'variant':<10} {'img/s':>10} {'ms/step':>10} {'ratio':>7}"]
    for name, img_s, ms, ratio in rows:
        img = f"{img_s:10.1f}" if img_s is not None else f"{'-':>10}"
        lines.append(f"{name:<10} {img} {ms:10.2f} {ratio:7.3f}")
    return "\n".join(lines)


def run(cfg: DictConfig) -> dict:
    """Time the float, search and fine-tune steps interleaved; print a table and a JSON line."""
    device = resolve_device(cfg.device)
    model = cfg.model.name if isinstance(cfg.model, DictConfig) else str(cfg.model)
    spec = resolve_spec(str(model), cfg.get("input_size"), cfg.get("num_classes"))
    batch_size, steps = int(cfg.batch), int(cfg.steps)
    warmup = int(cfg.warmup_steps)
    if batch_size < 1 or steps < 1 or warmup < 0:
        raise ConfigError("batch and steps must be >= 1 and warmup_steps >= 0")
    if cfg.get("threads") is not None:
        torch.set_num_threads(int(cfg.threads))
    channels_last = bool(cfg.get("channels_last", False))
    compile_ = bool(cfg.get("compile", False))
    fused.set_fused(bool(cfg.get("fused_quant", True)))
    torch.manual_seed(int(cfg.get("seed", 0)))

    platform = get_platform(str(cfg.get("platform", "diana")))
    variants, cost_step = build_variants(
        spec, platform, str(cfg.reg), float(cfg.strength), device, channels_last
    )
    x = torch.rand(batch_size, *spec.input_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, spec.num_classes, (batch_size,), device=device)
    batch = (x, y)

    if compile_:
        for note in try_compile(variants, batch):
            print(note)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    items: dict[str, Callable[[], None]] = {
        n: (lambda v=v: v.step(batch)) for n, v in variants.items()
    }
    items["cost"] = cost_step
    seconds = time_interleaved(items, steps, warmup, sync)

    img_s = {n: statistics.median(batch_size / s for s in seconds[n]) for n in VARIANTS}
    float_s = statistics.median(seconds["float"])
    # the cost alone relative to one float step, block by block (same noise), then the median
    cost_ratio = statistics.median(c / f for c, f in zip(seconds["cost"], seconds["float"]))
    rows = [(n, img_s[n], 1e3 * batch_size / img_s[n], img_s[n] / img_s["float"]) for n in VARIANTS]
    rows.append(("cost", None, 1e3 * statistics.median(seconds["cost"]), cost_ratio))
    print(
        f"{spec.name} {list(spec.input_size)} batch {batch_size} on {device.type}, "
        f"{torch.get_num_threads()} threads, {steps} steps per variant (ratio: vs float; "
        f"cost: vectorised cost fwd+bwd vs a float step, {1e3 * float_s:.2f} ms)"
    )
    print(format_table(rows))

    result = {
        "float_img_s": round(img_s["float"], 2),
        "search_img_s": round(img_s["search"], 2),
        "finetune_img_s": round(img_s["finetune"], 2),
        "search_ratio": round(img_s["search"] / img_s["float"], 4),
        "finetune_ratio": round(img_s["finetune"] / img_s["float"], 4),
        "cost_ratio": round(cost_ratio, 5),
        "device": device.type,
        "model": spec.name,
        "input_size": list(spec.input_size),
        "batch": batch_size,
        "steps": steps,
        "threads": torch.get_num_threads(),
        "compile": compile_,
        "channels_last": channels_last,
        "fused_quant": fused.fused_enabled() and not fused.compiled_signatures_failed(),
        "torch": torch.__version__,
    }
    if cfg.get("output"):
        Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.output).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {cfg.output}")
    print(json.dumps(result))
    return result
