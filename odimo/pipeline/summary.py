# SPDX-License-Identifier: Apache-2.0
"""The end of a run: final evaluation, metrics.json, pictures, and the printed summary."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning.pytorch as L
import torch
from omegaconf import DictConfig, OmegaConf

from odimo.callbacks.media import plot_mapping
from odimo.hw import GeometryTable, platform_identity
from odimo.io import atomic_write_text, is_rank_zero
from odimo.lit.chip import NOISE_DRAWS, chip_metrics
from odimo.nn import NetworkCost
from odimo.nn.baselines import baseline_mapping, baseline_names
from odimo.nn.mapping import model_mapping
from odimo.pipeline.fit import eval_trainer


def print_config(cfg: DictConfig) -> None:
    """The composed config as a tree (Rich when available)."""
    try:
        from rich import print as rprint
        from rich.tree import Tree
    except ImportError:
        print(OmegaConf.to_yaml(cfg, resolve=True))
        return
    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        node = tree.add(f"[bold]{key}")
        node.add(
            OmegaConf.to_yaml(value, resolve=True).strip()
            if OmegaConf.is_config(value)
            else str(value)
        )
    rprint(tree)


def evaluate(cfg: DictConfig, module: L.LightningModule, datamodule) -> dict[str, float]:
    """Validation and test metrics of the module's current weights."""
    trainer = eval_trainer(cfg)
    out = dict(trainer.validate(module, datamodule=datamodule, verbose=False)[0])
    out.update(trainer.test(module, datamodule=datamodule, verbose=False)[0])
    return {k: float(v) for k, v in out.items()}


def reference_costs(network: NetworkCost) -> dict[str, dict[str, float]]:
    """Hard latency and energy of the platform's baseline mappings of the same network."""
    platform, geometry = network.platform, network.geometry
    table = GeometryTable(geometry, dtype=torch.float64)
    free = [n for n, layer in zip(network.names, network.layers) if layer.searchable]
    out = {}
    for name in baseline_names(platform):
        mapping = baseline_mapping(name, geometry, platform, free)
        cost = platform.evaluate(mapping.counts_tensor(network.names), table)
        latency, energy = float(cost.total_latency_cycles), float(cost.total_energy_mw_cycles)
        out[name] = {
            "latency_ms": float(platform.cycles_to_ms(latency)),
            "energy_uj": float(platform.mw_cycles_to_uj(energy)),
        }
    return out


def final_metrics(
    cfg: DictConfig, run_dir: Path, module, datamodule, platform, spec, start: float, kind: str
) -> dict:
    """Evaluate, write metrics.json (atomically) and the mapping picture, print the summary.

    Every DDP rank evaluates (the metrics are synchronised); only global rank 0 writes.
    """
    datamodule = datamodule if datamodule is not None else module.trainer.datamodule
    scores = evaluate(cfg, module, datamodule)
    metrics: dict = {
        "kind": kind,
        "baseline": str(cfg.baseline.name) if kind == "baseline" else None,
        "model": spec.label,
        "dataset": str(cfg.dataset.name),
        "reg": str(cfg.reg.name),
        "strength": float(cfg.strength) if kind == "search" else 0.0,
        "seed": int(cfg.seed),
        "phases": [str(p) for p in cfg.phases],
        "platform": platform_identity(platform),
    }
    metrics.update({f"final/{k}": v for k, v in scores.items()})
    if kind != "float":
        metrics.update(noise_metrics(cfg, module.model, platform, datamodule))
        network = NetworkCost(module.model, platform, spec.input_size)
        cost = network.summary(soft=False)
        metrics.update(
            {
                "final/cost/latency_hard_cycles": cost["latency_cycles"],
                "final/cost/latency_hard_ms": cost["latency_ms"],
                "final/cost/energy_hard_mw_cycles": cost["energy_mw_cycles"],
                "final/cost/energy_hard_uj": cost["energy_uj"],
                **{f"final/arch/{k}": v for k, v in cost.items() if "frac" in k},
                "cheap_unit": platform.unit_names[platform.cheap_unit_index()],
                "reference": reference_costs(network),
            }
        )
        if kind == "search":
            metrics.update(search_metrics(cfg, run_dir, cost))
        if cfg.callbacks.plots and is_rank_zero():
            order = list(network.names)
            plot_mapping(model_mapping(module.model, platform, order), run_dir / "mapping_bars.png")
    metrics["wall_time_s"] = round(time.perf_counter() - start, 2)
    if is_rank_zero():  # under DDP the other ranks computed the same numbers
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1) + "\n")
        print_summary(metrics, run_dir)
    return metrics


#: target keys of the `reg` group -> (cost summary key, unit)
TARGETS = {"target_ms": ("latency_ms", "ms"), "target_uj": ("energy_uj", "µJ")}


def search_metrics(cfg: DictConfig, run_dir: Path, cost: dict) -> dict:
    """The hand-over choice and, in target mode, whether the deployed cost meets the target."""
    out: dict = {}
    handover = run_dir / "search" / "handover.json"
    if handover.is_file():
        info = json.loads(handover.read_text())
        out["search/handover_rule"] = info.get("rule")
        out["search/handover_epoch"] = info.get("chosen_epoch")
        filled = (info.get("slack_filled") or {}).get("channels") or {}
        out["search/slack_filled_channels"] = int(sum(filled.values()))
    target_file = run_dir / "search" / "target.json"
    if target_file.is_file():  # the λ the target mode derived (and used) replaces `strength`
        out["search/target_strength"] = json.loads(target_file.read_text())["strength"]
        out["strength"] = out["search/target_strength"]
    for key, (metric, unit) in TARGETS.items():
        target = cfg.reg.get(key)
        if target is None:
            continue
        excess = cost[metric] - float(target)
        out.update(
            {
                "final/target/value": float(target),
                "final/target/unit": unit,
                "final/target/met": bool(excess <= 1e-9 * float(target)),
                "final/target/excess": max(excess, 0.0),
            }
        )
    return out


def noise_metrics(cfg: DictConfig, model, platform, datamodule) -> dict:
    """The deployed network's accuracy under read-out noise (`eval.*`; see odimo.lit.chip),
    and which arithmetic `final/*/acc_hard` measured."""
    analog = platform.analog
    if analog is None or not analog.enabled:
        return {"final/accuracy_arithmetic": "ideal"}
    ev = cfg.get("eval") or {}
    images = ev.get("noise_images")
    loaders = {"val": datamodule.val_dataloader(), "test": datamodule.test_dataloader()}
    out = chip_metrics(
        model,
        loaders,
        analog.noise,
        int(ev.get("noise_draws", NOISE_DRAWS)),
        int(ev.get("noise_seed", 0)),
        None if images is None else int(images),
    )
    return {"final/accuracy_arithmetic": "chip_adc", **out}


def verdict(metrics: dict) -> str | None:
    """One line: where the run landed between the all-digital and the cheapest baseline, on the
    cost its regularizer minimises (energy for reg=power*, else latency), at what accuracy."""
    ref = metrics.get("reference") or {}
    if "all_digital" not in ref or "min_latency" not in ref:
        return None
    energy = str(metrics.get("reg", "")).startswith("power")
    key, unit = ("energy_uj", "µJ") if energy else ("latency_ms", "ms")
    own = metrics["final/cost/energy_hard_uj" if energy else "final/cost/latency_hard_ms"]
    digital, cheapest = ref["all_digital"][key], ref["min_latency"][key]
    span = digital - cheapest
    where = (
        f"{100 * (digital - own) / span:.0f} % of the way from all-digital to min_latency"
        if abs(span) > 1e-12
        else "all-digital and min_latency cost the same here: nothing to trade"
    )
    acc = metrics.get("final/test/acc_hard", float("nan"))
    return (
        f"  found: {own:.4f} {unit} at test accuracy {acc:.4f}, {100 * (1 - own / digital):.1f} % "
        f"below all-digital ({digital:.4f} {unit}); min_latency {cheapest:.4f} {unit}; {where}"
    )


def print_summary(metrics: dict, run_dir: Path) -> None:
    """A few lines: accuracy, latency and energy, the target, and the five baselines' costs."""
    if "final/target/value" in metrics:
        lam = metrics.get("search/target_strength", float("nan"))
        goal = (
            f"target {metrics['final/target/value']:g} {metrics['final/target/unit']} (λ {lam:.3g})"
        )
    else:
        goal = f"strength={metrics['strength']:g}"
    lines = [
        f"run: {run_dir}  ({metrics['kind']}, {metrics['model']} on {metrics['dataset']}, "
        f"reg={metrics['reg']} {goal}, {metrics['wall_time_s']:.0f} s)"
    ]
    for key in ("final/test/acc_hard", "final/val/acc_hard", "final/test/acc_float"):
        if key in metrics:
            lines.append(f"  {key:30s} {metrics[key]:.4f}")
    if "final/test/acc_chip_mean" in metrics:
        lines.append(
            f"  {'final/test/acc_chip (noise)':30s} {metrics['final/test/acc_chip_mean']:.4f} "
            f"± {metrics['final/test/acc_chip_std']:.4f} over "
            f"{metrics['final/chip/noise_draws']:.0f} draws, σ = "
            f"{metrics['final/chip/noise_sigma_lsb']:g} LSB (acc_hard: noiseless ADC)"
        )
    if "final/cost/latency_hard_ms" in metrics:
        lines.append(
            f"  {'latency (ms)':30s} {metrics['final/cost/latency_hard_ms']:.4f}   "
            f"energy (µJ) {metrics['final/cost/energy_hard_uj']:.4f}   "
            f"{metrics.get('cheap_unit', 'analog')} channels "
            f"{100 * metrics['final/arch/cheap_frac']:.1f} %"
        )
        if "final/target/value" in metrics:
            value, unit = metrics["final/target/value"], metrics["final/target/unit"]
            if metrics["final/target/met"]:
                lines.append(f"  {'target':30s} {value:g} {unit}: met")
            else:
                excess = metrics["final/target/excess"]
                lines.append(
                    f"  {'target':30s} {value:g} {unit}: NOT met, {excess:.4f} {unit} "
                    f"({100 * excess / value:.1f} %) above it"
                )
        found = verdict(metrics)
        if found:
            lines.append(found)
        lines.append("  baselines (same network, cost only; train them with sweep=baselines):")
        for name, ref in metrics["reference"].items():
            lines.append(f"  {name:30s} {ref['latency_ms']:.4f} ms   {ref['energy_uj']:.4f} µJ")
    print("\n".join(lines))
