# SPDX-License-Identifier: Apache-2.0
"""Speed of the phase modules' training steps, relative to a plain float step.

One process builds the same architecture three times:

- `float`: conv-BN-ReLU trained with SGD (`WarmupModule`, the warm-up phase);
- `search`: the search form folded from the float model, loss = CE + strength·latency, three
  optimizers (`SearchModule`), hard sampling (the search's default; `sampling`);
- `finetune`: the mapped form under the `min_latency_max8` baseline (both units active in some
  layers), weights and quantizers trained (`FinetuneModule`);
- `search_chip`, `finetune_chip` (when `build_variants` gets a `chip` platform, whose analog
  core reads out through an ADC): the same two steps through the read-out
  (`odimo.quant.adc`), its gains re-fitted every `recalibrate_every` steps as training does
  (`train.recalibrate_every`); the plain variants then run with exact analog sums, so one run
  gives the ratios with the chip arithmetic on and off;
- `search_chip_noise`, `finetune_chip_noise` (the chip's deployment noise not zero): the same
  with a fresh noise draw every step, chip-aware training (`train.noise=true`).

One step is exactly what training runs per batch: the module's `on_train_batch_start` (the
gains' re-fit schedule, the training noise), `module.losses(batch)` (the loss of
`training_step`), `backward()`, `optimizer.step()`, `optimizer.zero_grad(set_to_none=True)`, on
one fixed random batch already on the device. The variants are timed interleaved: in each of
up to `ROUNDS` rounds every variant runs one block of steps, in a new seeded random order per
round, so that load from other processes hits all of them alike instead of lining up with
their order. Where gains are re-fitted a block is a whole number of re-fit periods, each
starting with a re-fit, so every block carries the re-fits' cost in the share training pays.
The reported throughput is the median over rounds; a variant's ratio to the float step is taken
round by round (the two blocks saw the same load), then the median. One more timed item is the
vectorised cost alone (`regularizer(network)` forward + backward), reported the same way
relative to the float step (`cost_ratio`).
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable

import torch

from odimo.errors import ConfigError
from odimo.lit.modules import FinetuneModule, SearchModule, WarmupModule
from odimo.models import ModelSpec, build_model, fold_float_into, searchable_names, to_mapped
from odimo.models.build import make_options
from odimo.nn.baselines import baseline_mapping
from odimo.nn.conv import set_sampling
from odimo.nn.mapping import apply_mapping
from odimo.nn.network_cost import NetworkCost, make_regularizer

#: Input size [C, H, W] and classes of each model in the paper (its dataset).
PAPER_SIZES: dict[str, tuple[tuple[int, int, int], int]] = {
    "res20": ((3, 32, 32), 10),
    "res18": ((3, 64, 64), 200),
    "mbv1": ((3, 96, 96), 2),
    "darkside_mbv1": ((3, 32, 32), 10),
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
#: Rounds of the interleaved timing (fewer when there are fewer steps than rounds).
ROUNDS = 10
#: The search and fine-tune steps through the analog read-out (see the module doc).
CHIP_VARIANTS = ("search_chip", "finetune_chip", "search_chip_noise", "finetune_chip_noise")


def resolve_spec(
    model: str, input_size, num_classes: int | None = None, options: dict | None = None
) -> ModelSpec:
    """Model spec at the paper's input size, or at `input_size` [C, H, W] if given; `options`
    are the model config's own keys (e.g. Darkside's `width`)."""
    if model not in PAPER_SIZES:
        raise ConfigError(f"unknown model {model!r} (choose from: {', '.join(PAPER_SIZES)})")
    size, classes = PAPER_SIZES[model]
    if input_size is not None:
        size = tuple(int(v) for v in input_size)
        if len(size) != 3 or min(size) <= 0:
            raise ConfigError(f"input_size must be [C, H, W] of positive ints, got {size}")
    return ModelSpec(model, size, int(num_classes or classes), make_options(options or {}))


class Variant:
    """A model in its LightningModule with its optimizer, and the step that training runs."""

    def __init__(self, name: str, module, optimizer: torch.optim.Optimizer):
        self.name = name
        self.module = module
        self.optimizer = optimizer

    def restart(self) -> None:
        """The next step is the first of the module's re-fit period (it re-fits the gains)."""
        self.module.restart_read_out_schedule()

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.module.on_train_batch_start(batch, 0)
        loss = self.module.losses(batch)[0]
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def build_variants(
    spec: ModelSpec,
    platform,
    reg: str,
    strength: float,
    device: torch.device,
    channels_last: bool,
    chip=None,
    finetune_mapping: str = FINETUNE_MAPPING,
    sampling: str = "hard",
    recalibrate_every: int = 8,
) -> tuple[dict[str, Variant], Callable[[], None]]:
    """The three variants on `device` (plus the `CHIP_VARIANTS` on platform `chip` if given),
    and the cost forward+backward step of the search one.

    The search variants sample units as `sampling` says (`search.sampling`, hard by default)
    and start from α encoding the fine-tune mapping, a search midway: both units hold
    channels in the mixed layers (with equal α every channel would sit on the digital unit).
    The chip variants re-fit their gains every `recalibrate_every` steps (0: never), the
    `_noise` ones draw the chip's deployment noise every step (none when it is zero).
    """
    float_model = build_model(spec, "float")
    search_model = build_model(spec, "search", platform)
    fold_float_into(search_model, float_model)
    network = NetworkCost(search_model, platform, spec.input_size)
    regularizer = make_regularizer(reg, strength)
    mapping = baseline_mapping(
        finetune_mapping, network.geometry, platform, searchable_names(search_model)
    )
    mapped_model = to_mapped(search_model, platform, mapping)
    apply_mapping(search_model, mapping)
    set_sampling(search_model, sampling)

    modules = {
        "float": WarmupModule(float_model, spec.num_classes, OPTIM["float"]),
        "search": SearchModule(
            search_model, spec.num_classes, OPTIM["search"], network, regularizer
        ),
        "finetune": FinetuneModule(mapped_model, spec.num_classes, OPTIM["finetune"]),
    }
    noises = {}
    if chip is not None:
        noises = {"": None}
        if not chip.analog.noise.silent:
            noises["_noise"] = chip.analog.noise
    for suffix, noise in noises.items():
        chip_search = build_model(spec, "search", chip)
        chip_search.load_state_dict(search_model.state_dict(), strict=False)  # gains: 1st batch
        set_sampling(chip_search, sampling)
        chip_network = NetworkCost(chip_search, chip, spec.input_size)
        chip_mapped = to_mapped(chip_search, chip, mapping)
        modules[f"search_chip{suffix}"] = SearchModule(
            chip_search, spec.num_classes, OPTIM["search"], chip_network, regularizer
        )
        modules[f"finetune_chip{suffix}"] = FinetuneModule(
            chip_mapped, spec.num_classes, OPTIM["finetune"]
        )
        for name in (f"search_chip{suffix}", f"finetune_chip{suffix}"):
            modules[name].recalibrate_every = int(recalibrate_every)
            modules[name].train_noise = noise
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
    items: dict[str, Callable[[], None]],
    steps: int,
    warmup: int,
    sync: Callable[[], None],
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
    period: int = 1,
    restart: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per step of each item: `warmup` untimed steps each, then rounds of one block of
    steps per item (at least `steps` per item in all, in at most `ROUNDS` rounds), the items in a
    new seeded random order every round. A block is a multiple of `period` steps; `restart`,
    called once after the warm-up, aligns the items' periodic work with the blocks.

    Returns, per item, the mean seconds per step of its block in every round: index r is round
    r for every item, so two items' values at r saw the same stretch of the host's load.
    """
    for fn in items.values():
        for _ in range(warmup):
            fn()
    if restart is not None:
        restart()
    sync()
    block = math.ceil(math.ceil(steps / ROUNDS) / period) * period
    rounds = math.ceil(steps / block)
    rng = random.Random(seed)
    out: dict[str, list[float]] = {k: [] for k in items}
    for _ in range(rounds):
        for name in rng.sample(list(items), len(items)):
            fn = items[name]
            sync()
            start = clock()
            for _ in range(block):
                fn()
            sync()
            out[name].append((clock() - start) / block)
    return out


def time_steps(
    variants: dict[str, Variant],
    cost_step: Callable[[], None],
    spec: ModelSpec,
    batch_size: int,
    steps: int,
    warmup: int,
    device: torch.device,
    channels_last: bool = False,
    compile_: bool = False,
) -> tuple[dict[str, list[float]], list[str]]:
    """Seconds per step of every variant and of the cost step (one fixed random batch on
    `device`, interleaved blocks), and the notes of variants that could not be compiled."""
    x = torch.rand(batch_size, *spec.input_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, spec.num_classes, (batch_size,), device=device)
    batch = (x, y)
    notes = try_compile(variants, batch) if compile_ else []

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    items: dict[str, Callable[[], None]] = {
        n: (lambda v=v: v.step(batch)) for n, v in variants.items()
    }
    items["cost"] = cost_step
    period = max([1] + [v.module.recalibrate_every for v in variants.values()])

    def restart() -> None:
        for v in variants.values():
            v.restart()

    return time_interleaved(items, steps, warmup, sync, period=period, restart=restart), notes


def step_speeds(seconds: dict[str, list[float]], batch_size: int) -> dict[str, float]:
    """Median img/s of each variant, each variant's ratio to the float step (`<name>_ratio`,
    throughput over the float one) and the cost step's ratio of times to a float step.

    Ratios are taken round by round (both blocks saw the same load), then the median: drift of
    the load between rounds then moves both and cancels, where a ratio of two medians would
    compare blocks from different rounds.
    """
    names = [n for n in (*VARIANTS, *CHIP_VARIANTS) if n in seconds]
    img_s = {n: statistics.median(batch_size / s for s in seconds[n]) for n in names}
    floats = seconds["float"]
    ratios = {n: statistics.median(f / s for f, s in zip(floats, seconds[n])) for n in names}
    cost_ratio = statistics.median(c / f for c, f in zip(seconds["cost"], floats))
    return {
        **{f"{n}_img_s": v for n, v in img_s.items()},
        **{f"{n}_ratio": v for n, v in ratios.items()},
        "cost_ratio": cost_ratio,
    }
