# SPDX-License-Identifier: Apache-2.0
"""Speed benchmark task: throughput of the search and fine-tune steps relative to a float step.

The variants, the step and the interleaved timing are `odimo.lit.step_speed`; this module reads
the config, times, prints the table and a JSON line, and writes `output` when asked.
"""

from __future__ import annotations

import json
import statistics

import torch
from omegaconf import DictConfig, OmegaConf

from odimo.errors import ConfigError, OdimoError
from odimo.hw import get_platform, with_analog
from odimo.io import atomic_write_text
from odimo.lit.step_speed import (
    CHIP_VARIANTS,
    VARIANTS,
    build_variants,
    resolve_spec,
    step_speeds,
    time_steps,
)
from odimo.nn.conv import SAMPLING
from odimo.pipeline.phases import checked_recalibration
from odimo.quant import fused
from odimo.quant.adc import set_training_draws, training_draws


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


def format_table(rows: list[tuple[str, float | None, float, float]]) -> str:
    """Variant, img/s, ms/step, ratio to float."""
    width = max([7] + [len(r[0]) for r in rows])
    lines = [f"{'variant':<{width}} {'img/s':>10} {'ms/step':>10} {'ratio':>7}"]
    for name, img_s, ms, ratio in rows:
        img = f"{img_s:10.1f}" if img_s is not None else f"{'-':>10}"
        lines.append(f"{name:<{width}} {img} {ms:10.2f} {ratio:7.3f}")
    return "\n".join(lines)


def _print_table(label: str, batch_size: int, device, steps: int, seconds, speeds) -> None:
    """The header line and the table: img/s, ms/step and the ratio to a float step."""
    names = [n for n in (*VARIANTS, *CHIP_VARIANTS) if f"{n}_img_s" in speeds]
    img_s = {n: speeds[f"{n}_img_s"] for n in names}
    rows = [(n, img_s[n], 1e3 * batch_size / img_s[n], speeds[f"{n}_ratio"]) for n in names]
    rows.append(("cost", None, 1e3 * statistics.median(seconds["cost"]), speeds["cost_ratio"]))
    print(
        f"{label} batch {batch_size} on {device.type}, "
        f"{torch.get_num_threads()} threads, {steps} steps per variant (ratio: vs float; "
        f"cost: vectorised cost fwd+bwd vs a float step, "
        f"{1e3 * statistics.median(seconds['float']):.2f} ms)"
    )
    print(format_table(rows))


def _spec(cfg: DictConfig):
    """The benchmarked network: `model=<group option>` (its keys are options) or a name."""
    if not isinstance(cfg.model, DictConfig):
        return resolve_spec(str(cfg.model), cfg.get("input_size"), cfg.get("num_classes"), {})
    options = OmegaConf.to_container(cfg.model, resolve=True)
    name = str(options.pop("name"))
    return resolve_spec(name, cfg.get("input_size"), cfg.get("num_classes"), options)


def _result(speeds: dict, names, device, spec, batch_size: int, steps: int) -> dict:
    """The JSON line of the benchmark: throughputs, ratios to the float step (round by round,
    `step_speeds`), the setting."""
    return {
        **{f"{n}_img_s": round(speeds[f"{n}_img_s"], 2) for n in VARIANTS},
        **{f"{n}_ratio": round(speeds[f"{n}_ratio"], 4) for n in names if n != "float"},
        "cost_ratio": round(speeds["cost_ratio"], 5),
        "device": device.type,
        "model": spec.name,
        "input_size": list(spec.input_size),
        "batch": batch_size,
        "steps": steps,
        "threads": torch.get_num_threads(),
        "fused_quant": fused.fused_enabled() and not fused.compiled_signatures_failed(),
        "noise_generator": training_draws(),
        "torch": torch.__version__,
    }


def run(cfg: DictConfig) -> dict:
    """Time the float, search and fine-tune steps interleaved; print a table and a JSON line."""
    device = resolve_device(cfg.device)
    spec = _spec(cfg)
    batch_size, steps = int(cfg.batch), int(cfg.steps)
    warmup = int(cfg.warmup_steps)
    if batch_size < 1 or steps < 1 or warmup < 0:
        raise ConfigError("batch and steps must be >= 1 and warmup_steps >= 0")
    if cfg.get("threads") is not None:
        torch.set_num_threads(int(cfg.threads))
    channels_last = bool(cfg.get("channels_last", False))
    compile_ = bool(cfg.get("compile", False))
    fused.set_fused(bool(cfg.get("fused_quant", True)))
    set_training_draws(str(cfg.get("noise_generator", "counter")), "noise_generator")
    torch.manual_seed(int(cfg.get("seed", 0)))

    recalibrate_every = checked_recalibration(cfg.get("recalibrate_every", 8), "recalibrate_every")
    sampling = str(cfg.get("sampling") or "hard")
    if sampling not in SAMPLING:
        raise ConfigError(f"sampling={sampling!r} is not one of: {', '.join(SAMPLING)}")
    chip = get_platform(cfg.platform)
    platform = with_analog(chip, None)  # the plain variants: exact analog sums
    if chip.analog is None or not chip.analog.enabled:
        chip = None
    variants, cost_step = build_variants(
        spec,
        platform,
        str(cfg.reg),
        float(cfg.strength),
        device,
        channels_last,
        chip,
        str(cfg.get("finetune_mapping") or "min_latency_max8"),
        sampling,
        recalibrate_every,
    )
    names = [n for n in (*VARIANTS, *CHIP_VARIANTS) if n in variants]
    seconds, notes = time_steps(
        variants, cost_step, spec, batch_size, steps, warmup, device, channels_last, compile_
    )
    for note in notes:
        print(note)

    speeds = step_speeds(seconds, batch_size)
    _print_table(f"{spec.name} {list(spec.input_size)}", batch_size, device, steps, seconds, speeds)

    result = _result(speeds, names, device, spec, batch_size, steps)
    result.update(
        compile=compile_,
        channels_last=channels_last,
        sampling=sampling,
        recalibrate_every=recalibrate_every,
    )
    if cfg.get("output"):
        atomic_write_text(cfg.output, json.dumps(result, indent=1) + "\n")
        print(f"wrote {cfg.output}")
    print(json.dumps(result))
    return result
