# SPDX-License-Identifier: Apache-2.0
"""The main job: warm-up -> search -> fine-tune (or a baseline mapping), tested and summarised.

Run folder (`paths.run_dir`)::

    config.yaml            composed config (resolved)
    warmup.json            where the cached float warm-up lives
    search/                checkpoints/{best,last}.ckpt, csv/metrics.csv, layers.csv,
                           analog_heatmap.png, result.pt, DONE
    finetune/ | baseline/  checkpoints/, csv/, DONE
    mapping.json           the frozen mapping (mapping JSON format)
    mapping_bars.png       digital vs analog channels per layer
    final/model.pt         the deployed (mapped) network, see odimo.models.io
    metrics.json, DONE     results; FAILED (with the traceback) if the job broke
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import traceback
from pathlib import Path

import lightning.pytorch as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from odimo.callbacks import CostLogger, MappingHandover, MappingMedia, TemperatureSchedule
from odimo.errors import ConfigError, OdimoError
from odimo.hw import get_platform
from odimo.io import (
    atomic_write_text,
    cache_lock,
    changed_keys,
    config_fingerprint,
    is_rank_zero,
    job_lock,
    rank_zero_write,
    result_config,
    same_on_all_ranks,
)
from odimo.lit import FinetuneModule, SearchModule, WarmupModule
from odimo.models import (
    ModelSpec,
    build_model,
    fold_float_into,
    model_spec,
    save_mapped,
    searchable_names,
    to_mapped,
)
from odimo.nn import (
    NetworkCost,
    Regularizer,
    TargetRegularizer,
    apply_mapping,
    hard_mapping,
    make_regularizer,
    model_mapping,
    set_sampling,
    set_temperature,
)
from odimo.nn.baselines import baseline_mapping
from odimo.quant import fused
from odimo.tasks.phases import eval_trainer, fit_phase, load_state, save_state, warmup_key
from odimo.tasks.summary import final_metrics, print_config

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
            _write_failed(failed)
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
                _write_failed(failed)
            raise
        failed.unlink(missing_ok=True)
        stamp = {"fingerprint": config_fingerprint(cfg), "finished": time.strftime("%F %T")}
        atomic_write_text(done, json.dumps(stamp) + "\n")
    return metrics


def _write_failed(path: Path) -> None:
    """FAILED with the current traceback (best effort: the disk may be full)."""
    with contextlib.suppress(OSError, OdimoError):
        atomic_write_text(path, traceback.format_exc())


def previous_result(cfg: DictConfig, run_dir: Path) -> dict | None:
    """The stored metrics of a finished job with this config; None if the job must run.

    Records the config's fingerprint (`fingerprint.json`) before a job starts; a folder holding
    another config's job raises ConfigError, or is cleared when `force=true`.
    """
    fingerprint, tree = config_fingerprint(cfg), result_config(cfg)
    record = run_dir / "fingerprint.json"
    if record.is_file():
        old = json.loads(record.read_text())
        if old.get("fingerprint") != fingerprint and not cfg.get("force", False):
            keys = ", ".join(changed_keys(old.get("config", {}), tree)[:6]) or "?"
            raise ConfigError(
                f"{run_dir} holds a job of another config (changed: {keys}); use another "
                "sweep_name or run dir, or force=true to delete it and run again"
            )
    if cfg.get("force", False):
        clear_job(run_dir)
    elif (run_dir / "DONE").is_file() and (run_dir / "metrics.json").is_file():
        print(f"{run_dir} is done already; skipping (force=true runs it again)")
        return json.loads((run_dir / "metrics.json").read_text())
    atomic_write_text(record, json.dumps({"fingerprint": fingerprint, "config": tree}) + "\n")
    return None


def clear_job(run_dir: Path) -> None:
    """Delete a job's outputs (`force=true`); Hydra's `.hydra/`, logs and the lock stay."""
    keep = {".hydra", ".lock"}
    for item in run_dir.iterdir():
        if item.name in keep or item.suffix == ".log":
            continue
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()
    print(f"{run_dir}: force=true, previous outputs deleted")


def _run(cfg: DictConfig, run_dir: Path) -> dict:
    phases = check_config(cfg)
    start = time.perf_counter()
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if cfg.get("threads") is not None:  # jobs sharing a machine: threads × jobs ≤ cores
        torch.set_num_threads(int(cfg.threads))
    fused.set_fused(bool(cfg.get("fused_quant", True)))
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


def warmup(cfg: DictConfig, spec: ModelSpec, datamodule, run_dir: Path, allowed: bool, job: str):
    """The float warm-up of this recipe: loaded from the cache, or trained once and cached.

    The cache entry is locked while it is checked and trained: jobs that need the same warm-up
    at the same time train it once, the others wait and reuse it. (DDP ranks other than 0 do
    not lock: they are started by rank 0, which holds the lock for them.)
    """
    cache = Path(cfg.paths.cache_dir) / "warmup" / warmup_key(cfg)
    model = build_model(spec, "float")
    module = WarmupModule(
        model, spec.num_classes, OmegaConf.to_container(cfg.warmup.optim, resolve=True)
    )
    lock = cache_lock(cache, "warmup") if is_rank_zero() else contextlib.nullcontext()
    with lock:
        if (cache / "DONE").is_file():
            info = load_state(cache / "float.pt", model)
            print(f"[warmup] reusing {cache} (val acc {info.get('val_acc', float('nan')):.4f})")
        elif not allowed:
            raise ConfigError(f"no cached warm-up at {cache}: add 'warmup' to phases")
        else:
            fit_phase(
                cfg, module, datamodule, cache, "warmup", cfg.warmup, job, fingerprint=cache.name
            )
            val = eval_trainer(cfg).validate(module, datamodule=datamodule, verbose=False)[0]
            info = {"val_acc": float(val["val/acc_float"])}
            save_state(cache / "float.pt", model, info)
            rank_zero_write(cache / "DONE", json.dumps({**info, "key": cache.name}) + "\n")
    rank_zero_write(run_dir / "warmup.json", json.dumps({"cache_dir": str(cache), **info}) + "\n")
    return model, module


def search_target(cfg: DictConfig, platform) -> float | None:
    """The cost target of the search in the regularizer's unit (cycles / mW·cycles), or None.

    `reg.target_ms` (reg=latency) or `reg.target_uj` (reg=power) switch the search to target
    mode; the λ of `strength` is then derived, not given.
    """
    reg = str(cfg.reg.name)
    given = {k: cfg.reg.get(k) for k in ("target_ms", "target_uj") if cfg.reg.get(k) is not None}
    if not given:
        return None
    if len(given) > 1:
        raise ConfigError(
            "give one target: reg.target_ms (reg=latency) or reg.target_uj (reg=power)"
        )
    key, value = next(iter(given.items()))
    needs = {"target_ms": "latency", "target_uj": "power"}[key]
    if reg != needs:
        raise ConfigError(f"reg.{key} is a target for reg={needs}, not reg={reg}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"reg.{key} must be a number, got {value!r}") from None
    if not value > 0:
        raise ConfigError(f"reg.{key} must be > 0, got {value}")
    # ms -> cycles and µJ -> mW·cycles share the factor f/1e3
    return value * platform.freq_hz / 1e3


def search_regularizer(cfg: DictConfig, platform) -> Regularizer:
    """strength × cost, or the target mode's hinge when a target is given."""
    regularizer = make_regularizer(str(cfg.reg.name), float(cfg.strength))
    target = search_target(cfg, platform)
    return TargetRegularizer(regularizer, target) if target is not None else regularizer


@torch.no_grad()
def derive_target_strength(
    regularizer: TargetRegularizer, model, network: NetworkCost, datamodule, path: Path
) -> None:
    """Derive the target mode's λ once (val task loss and initial cost), kept in `path`."""
    if path.is_file():
        regularizer.strength = float(json.loads(path.read_text())["strength"])
        return
    datamodule.setup("fit")
    was_training = model.training
    model.eval()
    losses = []
    with hard_mapping(model):  # the deployed network the search starts from
        for i, (x, y) in enumerate(datamodule.val_dataloader()):
            if i == 8:
                break
            losses.append(float(torch.nn.functional.cross_entropy(model(x), y)))
    model.train(was_training)
    task_loss = sum(losses) / max(len(losses), 1)
    initial = float(regularizer.base.cost(network))
    strength = regularizer.calibrate(task_loss, initial)
    info = {"target": regularizer.target, "unit": regularizer.unit, "task_loss": task_loss}
    info.update({"initial_cost": initial, "strength": strength})
    rank_zero_write(path, json.dumps(info, indent=1) + "\n")
    print(
        f"[search] target mode: λ = {strength:.3g} per {regularizer.unit} (task loss "
        f"{task_loss:.3f}, initial cost {initial:.4g}, target {regularizer.target:.4g})"
    )


def fill_objective(cfg: DictConfig) -> str | None:
    """What slack filling must not raise: the regularised cost (None when filling is off)."""
    if not bool(cfg.search.get("fill_slack", False)):
        return None
    return "energy" if str(cfg.reg.name) in ("power", "power-naive") else "latency"


def search(
    cfg: DictConfig, spec: ModelSpec, platform, float_model, datamodule, run_dir: Path, job: str
) -> SearchModule:
    """ODiMO search from the folded warm-up; returns the module with the handed-over weights."""
    phase_dir = run_dir / "search"
    model = build_model(spec, "search", platform)
    fold_float_into(model, float_model)
    s = cfg.search
    set_sampling(model, str(s.get("sampling", "soft")))
    set_temperature(model, float(s.temperature.initial))
    network = NetworkCost(model, platform, spec.input_size)
    regularizer = search_regularizer(cfg, platform)
    module = SearchModule(
        model,
        spec.num_classes,
        OmegaConf.to_container(s.optim, resolve=True),
        network,
        regularizer,
        polarization=float(s.get("polarization", 0.0)),
    )
    if (phase_dir / "DONE").is_file():
        load_state(phase_dir / "result.pt", model)
        print(f"[search] done already; reusing {phase_dir / 'result.pt'}")
        return module
    phase_dir.mkdir(parents=True, exist_ok=True)
    target = getattr(regularizer, "target", None)
    if target is not None:
        derive_target_strength(regularizer, model, network, datamodule, phase_dir / "target.json")
    plots = bool(cfg.callbacks.plots)
    final = s.temperature.get("final")
    callbacks = [
        TemperatureSchedule(
            s.temperature.initial,
            None if final is None else float(final),
            s.temperature.get("decay", 0.045),
            int(s.get("alpha_warmup_epochs", 0)),
            float(s.get("strength_ramp", 0.0)),
            regularizer,
        ),
        MappingHandover(
            platform,
            run_dir / "mapping.json",
            network,
            regularizer,
            phase_dir,
            str(s.get("handover", "best_hard")),
            target,
            fill_objective(cfg),
            bool(s.get("target_projection", False)),
        ),
        MappingMedia(platform, run_dir / "mapping_bars.png", plots),
    ]
    if cfg.callbacks.cost_curves:
        callbacks.append(CostLogger(network, phase_dir, heatmap=plots))
    fit_phase(cfg, module, datamodule, phase_dir, "search", s, job, callbacks, restore_best=False)
    if not cfg.callbacks.layer_table:
        (phase_dir / "layers.csv").unlink(missing_ok=True)
    save_state(
        phase_dir / "result.pt", model, {"mapping": model_mapping(model, platform).to_json()}
    )
    (phase_dir / "DONE").touch()
    return module


def train_mapped(
    cfg: DictConfig, model, spec: ModelSpec, datamodule, phase_dir: Path, phase: str, job: str
) -> FinetuneModule:
    """Train a network with a frozen mapping (fine-tune or baseline); best weights loaded."""
    phase_cfg = cfg.finetune if phase == "finetune" else cfg.baseline_train
    module = FinetuneModule(
        model, spec.num_classes, OmegaConf.to_container(phase_cfg.optim, resolve=True)
    )
    if (phase_dir / "DONE").is_file():
        load_state(phase_dir / "result.pt", model)
        return module
    media = MappingMedia(
        get_platform(cfg.platform), phase_dir.parent / "mapping_bars.png", cfg.callbacks.plots
    )
    fit_phase(cfg, module, datamodule, phase_dir, phase, phase_cfg, job, [media])
    save_state(phase_dir / "result.pt", model, {})
    rank_zero_write(phase_dir / "DONE", json.dumps({"fingerprint": config_fingerprint(cfg)}))
    return module


__all__ = ["OdimoError", "run"]
