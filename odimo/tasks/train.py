# SPDX-License-Identifier: Apache-2.0
"""The main job: warm-up -> search -> fine-tune (or a baseline mapping), tested and summarised.

Run folder (`paths.run_dir`; docs/run.md lists it with the warm-up cache)::

    .hydra/, cli.log       Hydra's record of the job and its log
    config.yaml            composed config (resolved)
    fingerprint.json       hash of the config keys that change results
    warmup.json            where the cached float warm-up lives
    search/                checkpoints/{best,last}.ckpt, csv/version_*/metrics.csv, layers.csv,
                           cheap_heatmap.png, candidates/{index.json,epoch=<n>.pt},
                           handover.json, target.json (target mode), result.pt, DONE
    finetune/ | baseline/  checkpoints/{best,last}.ckpt, csv/version_*/metrics.csv, result.pt, DONE
    mapping.json           the frozen mapping (mapping JSON format)
    mapping_bars.png       digital vs analog channels per layer
    final/model.pt         the deployed (mapped) network, see odimo.models.io
    metrics.json, DONE     results; FAILED (with the traceback) if the job broke; .lock
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import lightning.pytorch as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from odimo.errors import ConfigError, OdimoError
from odimo.hw import get_platform
from odimo.io import (
    atomic_write_text,
    config_fingerprint,
    is_rank_zero,
    job_lock,
    rank_zero_write,
    same_on_all_ranks,
)
from odimo.lit import FinetuneModule
from odimo.lit.trainer import check_trainer
from odimo.models import (
    build_model,
    fold_float_into,
    model_spec,
    save_mapped,
    searchable_names,
    to_mapped,
)
from odimo.nn import NetworkCost, apply_mapping, model_mapping
from odimo.nn.baselines import baseline_mapping
from odimo.pipeline.job import previous_result, write_failed
from odimo.pipeline.phases import search, train_mapped, warmup
from odimo.pipeline.summary import final_metrics, print_config
from odimo.quant import fused
from odimo.quant.adc import set_training_draws

PHASES = ("warmup", "search", "finetune", "baseline")


def check_epochs(cfg: DictConfig, phases: list[str]) -> None:
    """Every phase that runs needs epochs >= 1 and patience >= 0 (integers).

    The warm-up may have 0 epochs: the float network is cached as built (e.g. with pretrained
    `model.weights`).
    """
    sections = {"warmup": "warmup", "search": "search", "finetune": "finetune"}
    sections["baseline"] = "baseline_train"
    for phase in phases:
        key = sections[phase]
        for name, minimum in (("epochs", int(phase != "warmup")), ("patience", 0)):
            value = cfg[key][name]
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{key}.{name} must be an integer >= {minimum}, got {value!r}")


def check_config(cfg: DictConfig) -> list[str]:
    """Validate what Hydra cannot: phase names and order, numeric strength, epochs."""
    phases = [str(p) for p in cfg.phases]
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise ConfigError(f"unknown phases {unknown} (choose from {list(PHASES)})")
    if "baseline" in phases and ("search" in phases or "finetune" in phases):
        raise ConfigError("phases: 'baseline' replaces search and finetune; use [warmup, baseline]")
    if "finetune" in phases and "search" not in phases:
        raise ConfigError("phases: 'finetune' needs 'search' before it")
    try:
        strength = float(cfg.strength)
    except (TypeError, ValueError):
        raise ConfigError(f"strength must be a number, got {cfg.strength!r}") from None
    if not strength >= 0:
        raise ConfigError(f"strength must be >= 0, got {strength}")
    threads = cfg.get("threads")
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise ConfigError(f"threads must be an integer >= 1 or null, got {threads!r}")
    check_epochs(cfg, phases)
    check_trainer(cfg.trainer)
    check_ddp_launch(cfg)
    return phases


def check_ddp_launch(cfg: DictConfig) -> None:
    """Refuse a multi-process trainer inside a local multirun (Lightning would re-run the whole
    sweep command in every extra process); a cluster launcher starts the processes instead."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    devices = cfg.trainer.get("devices", 1)
    if devices in (1, "1", [0]) or "ddp" not in str(cfg.trainer.get("strategy", "")):
        return
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    started = ("LOCAL_RANK", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID")
    if not any(k in os.environ for k in started):
        raise ConfigError(
            "trainer with several processes inside a sweep: use hydra/launcher=slurm with "
            "hydra.launcher.tasks_per_node=<devices> (or run each job alone with torchrun)"
        )


def run(cfg: DictConfig) -> dict:
    """Run the job in `cfg.paths.run_dir`; skip it if DONE, leave FAILED if it breaks.

    The job folder is locked while the job runs (a second launch waits, then finds DONE), and
    stamped with the config's fingerprint: a folder made by another config is refused unless
    `force=true`. Under DDP only global rank 0 locks and writes; the other ranks compute.
    """
    run_dir = Path(cfg.paths.run_dir)
    if not is_rank_zero():
        return _run(cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with job_lock(run_dir):
        done, failed = run_dir / "DONE", run_dir / "FAILED"
        try:  # a bad config fails before it is recorded as the folder's config
            check_config(cfg)
        except OdimoError:
            write_failed(failed)
            raise
        stored = previous_result(cfg, run_dir)
        if stored is not None:
            return stored
        try:
            metrics = _run(cfg, run_dir)
        except BaseException as err:
            # an interruption (Ctrl-C, SIGTERM: Lightning turns both into SystemExit) is not a
            # failure: the job resumes from its last.ckpt when the same command runs again
            if not isinstance(err, (KeyboardInterrupt, SystemExit)):
                write_failed(failed)
            raise
        failed.unlink(missing_ok=True)
        stamp = {"fingerprint": config_fingerprint(cfg), "finished": time.strftime("%F %T")}
        atomic_write_text(done, json.dumps(stamp) + "\n")
    return metrics


def _run(cfg: DictConfig, run_dir: Path) -> dict:
    phases = check_config(cfg)
    start = time.perf_counter()
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if cfg.get("threads") is not None:  # jobs sharing a machine: threads × jobs ≤ cores
        torch.set_num_threads(int(cfg.threads))
    fused.set_fused(bool(cfg.get("fused_quant", True)))
    set_training_draws(str((cfg.get("train") or {}).get("noise_generator", "counter")))
    if is_rank_zero():
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        print_config(cfg)
    platform = get_platform(cfg.platform)
    spec = model_spec(cfg.model, cfg.dataset.input_size, cfg.dataset.num_classes)
    datamodule = instantiate(cfg.dataset.datamodule)
    job = run_dir.name
    float_model, warm = warmup(cfg, spec, datamodule, run_dir, "warmup" in phases, job)
    if phases == ["warmup"]:
        return final_metrics(cfg, run_dir, warm, datamodule, platform, spec, start, kind="float")
    if "baseline" in phases:
        model = build_model(spec, "mapped", platform)
        fold_float_into(model, float_model)
        geometry = NetworkCost(model, platform, spec.input_size).geometry
        mapping = baseline_mapping(
            str(cfg.baseline.name), geometry, platform, searchable_names(model)
        )
        apply_mapping(model, mapping)
        rank_zero_write(run_dir / "mapping.json", json.dumps(mapping.to_json(), indent=1) + "\n")
        module = train_mapped(cfg, model, spec, datamodule, run_dir / "baseline", "baseline", job)
        kind = "baseline"
    else:
        module = search(cfg, spec, platform, float_model, datamodule, run_dir, job)
        model = to_mapped(module.model, platform)
        same_on_all_ranks(model_mapping(model, platform).to_json(), "searched mapping")
        if "finetune" in phases:
            module = train_mapped(
                cfg, model, spec, datamodule, run_dir / "finetune", "finetune", job
            )
        else:  # evaluate the argmax network of the search as it is
            module = FinetuneModule(
                model, spec.num_classes, OmegaConf.to_container(cfg.finetune.optim, resolve=True)
            )
        kind = "search"
    if is_rank_zero():
        save_mapped(run_dir / "final" / "model.pt", module.model, platform)
    return final_metrics(cfg, run_dir, module, datamodule, platform, spec, start, kind=kind)


__all__ = ["OdimoError", "run"]
