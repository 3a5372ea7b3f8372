# SPDX-License-Identifier: Apache-2.0
"""Running one phase: a Trainer with checkpoints, logging, resume and a DONE marker per phase."""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    ModelCheckpoint,
    RichProgressBar,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from odimo.callbacks import FiniteLossGuard, load_module_state
from odimo.errors import CheckpointError, ConfigError, TrainingDivergedError
from odimo.hw import get_platform, platform_identity
from odimo.io import (
    atomic_torch_save,
    config_fingerprint,
    is_rank_zero,
    remove_stale_temps,
)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written to a unique temp file, fsync'ed, then renamed.

    A process killed while it writes `last.ckpt` leaves the previous `last.ckpt` intact (and a
    hidden temp file that is never read and removed on the next attempt).
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_torch_save(checkpoint, path)


class ResumeGuard(L.Callback):
    """Stamps each checkpoint with the job's config fingerprint and the RNG states.

    The fingerprint lets a re-run refuse a checkpoint made by another config. The RNG states
    (torch, CUDA, numpy, Python) make a resumed phase draw the same random numbers as an
    uninterrupted one (the data order is a function of the epoch, see `EpochRandomSampler`).
    """

    def __init__(self, fingerprint: str, phase: str, platform: dict | None = None):
        self.fingerprint = fingerprint
        self.phase = phase
        self.platform = platform  # the platform identity (name, constants, fingerprint)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        np_state = np.random.get_state()
        checkpoint["odimo"] = {
            "fingerprint": self.fingerprint,
            "phase": self.phase,
            "platform": self.platform,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
                "python": random.getstate(),
            },
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        rng = checkpoint.get("odimo", {}).get("rng")
        if not rng:
            return
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        kind, keys, *rest = rng["numpy"]
        np.random.set_state((kind, keys.numpy(), *rest))
        version, state, gauss = rng["python"]
        random.setstate((version, tuple(state), gauss))


def progress_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The progress bar chosen by `callbacks.progress`."""
    choice = str(cfg.callbacks.progress)
    if choice == "rich":
        return [RichProgressBar(leave=False)]
    if choice == "tqdm":
        return [TQDMProgressBar()]
    if choice == "none":
        return []
    raise ConfigError(f"callbacks.progress must be rich, tqdm or none, got {choice!r}")


def make_loggers(cfg: DictConfig, phase_dir: Path, phase: str, job_name: str) -> list:
    """CSV always; W&B (one run per phase, grouped by sweep) when `logger.wandb.enabled`."""
    # a new version folder per attempt: a resumed phase never overwrites earlier metrics
    loggers: list = [CSVLogger(save_dir=str(phase_dir), name="csv")]
    if cfg.logger.wandb.enabled:
        try:
            import wandb  # noqa: F401
            from lightning.pytorch.loggers import WandbLogger
        except ImportError:
            raise ConfigError(
                "logger=wandb needs the wandb package: pip install -e .[wandb]"
            ) from None
        loggers.append(
            WandbLogger(
                project=cfg.logger.wandb.project,
                entity=cfg.logger.wandb.entity,
                group=str(cfg.logger.wandb.group),
                job_type=phase,
                name=f"{job_name}/{phase}",
                tags=list(cfg.logger.wandb.tags),
                save_dir=str(phase_dir),
                config=OmegaConf.to_container(cfg, resolve=True),
            )
        )
    return loggers


def eval_trainer(cfg: DictConfig) -> L.Trainer:
    """A one-device Trainer for validation/test of the current weights, with no logger.

    Evaluations after a phase must not log: the phase's W&B run is finished by then.
    """
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in ("strategy", "sync_batchnorm"):
        trainer_cfg.pop(key, None)
    trainer_cfg["devices"] = 1
    return L.Trainer(
        **trainer_cfg, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )


def finish_wandb() -> None:
    """Close the W&B run of a phase (needed between multirun jobs)."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()


#: Trainer keys that change how a phase is logged or printed, never what it trains.
TRAINER_DISPLAY_KEYS = (
    "log_every_n_steps",
    "enable_model_summary",
    "enable_progress_bar",
    "num_sanity_val_steps",
)


def world_size(trainer_cfg: dict) -> int:
    """Processes that train together: devices (resolved like Lightning's `auto`) × nodes."""
    devices = trainer_cfg.get("devices", "auto")
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif isinstance(devices, str) and "," in devices:
        count = len([d for d in devices.split(",") if d.strip()])
    elif str(devices).strip().lstrip("-").isdigit() and int(devices) > 0:
        count = int(devices)
    elif accelerator != "cpu" and torch.cuda.is_available():  # "auto" or -1 on a GPU machine
        count = torch.cuda.device_count()
    else:
        count = 1
    return count * int(trainer_cfg.get("num_nodes", 1) or 1)


def trainer_recipe(cfg: DictConfig) -> dict:
    """What of the trainer changes a phase's result: every trainer key but the display ones,
    the world size and the global batch (batch size × processes × accumulated batches)."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in TRAINER_DISPLAY_KEYS:
        trainer.pop(key, None)
    size = world_size(trainer)
    batch = int(cfg.dataset.datamodule.get("batch_size", 1))
    accumulate = int(trainer.get("accumulate_grad_batches", 1) or 1)
    return {**trainer, "world_size": size, "global_batch": batch * size * accumulate}


def checkpoint_callbacks(ckpt_dir: Path, monitor: str) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """`best.ckpt` (highest `monitor`) and `last.ckpt` (written after every epoch)."""
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor=monitor,
        mode="max",
        enable_version_counter=False,
    )
    # `save_last=True` refreshes last.ckpt only when a new best is saved; resuming must continue
    # from the latest epoch, so a second callback writes last.ckpt after every epoch.
    latest = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="last",
        monitor=None,
        save_top_k=1,
        every_n_epochs=1,
        enable_version_counter=False,
    )
    return best, latest


def fit_phase(
    cfg: DictConfig,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    phase_dir: Path,
    phase: str,
    phase_cfg: DictConfig,
    job_name: str,
    callbacks: list[L.Callback] = (),
    restore_best: bool = True,
    fingerprint: str | None = None,
) -> L.Trainer:
    """Train a phase, resuming from `last.ckpt` if a previous attempt left one.

    Checkpoints are written atomically and stamped with `fingerprint` (default: the job's config
    fingerprint; the warm-up uses its cache key); one made by another config is refused.

    Checkpoints and early stopping follow `module.monitor` (the deployed network's accuracy).
    At the end the best checkpoint's weights are loaded into `module`, unless `restore_best`
    is False (the search's hand-over callback chooses what to keep).
    """
    ckpt_dir = phase_dir / "checkpoints"
    checkpoint, latest = checkpoint_callbacks(ckpt_dir, module.monitor)
    fingerprint = fingerprint or config_fingerprint(cfg)
    if not is_rank_zero():
        redirect_file_outputs(callbacks)
    extra: list[L.Callback] = [
        checkpoint,
        latest,
        FiniteLossGuard(cfg.callbacks.nonfinite_every),
        ResumeGuard(
            fingerprint,
            phase,
            platform_identity(get_platform(cfg.platform)) if "platform" in cfg else None,
        ),
    ]
    if int(phase_cfg.patience) > 0:
        extra.append(EarlyStopping(module.monitor, mode="max", patience=int(phase_cfg.patience)))
    trainer = L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        max_epochs=int(phase_cfg.epochs),
        default_root_dir=str(phase_dir),
        logger=make_loggers(cfg, phase_dir, phase, job_name),
        callbacks=[*callbacks, *extra, *progress_callbacks(cfg)],
        enable_progress_bar=str(cfg.callbacks.progress) != "none",
        plugins=[AtomicCheckpointIO()],
    )
    maybe_compile(module, bool(cfg.get("compile", False)))
    resume = resume_checkpoint(ckpt_dir, fingerprint, phase)
    try:
        _fit(trainer, module, datamodule, resume, phase, int(cfg.callbacks.nonfinite_every))
    finally:
        if cfg.logger.wandb.enabled:
            finish_wandb()
    if restore_best and checkpoint.best_model_path:
        load_module_state(module, checkpoint.best_model_path)
    return trainer


def _fit(trainer: L.Trainer, module, datamodule, resume: str | None, phase: str, every: int):
    """`trainer.fit`, with divergence and unreadable checkpoints turned into one-line errors."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except TrainingDivergedError as err:
        raise TrainingDivergedError(
            f"[{phase}] detected at optimizer step {trainer.global_step} (loss checked every "
            f"{every} batches): {err}"
        ) from None
    except (KeyError, RuntimeError, EOFError) as err:
        if resume and "checkpoint" in str(err).lower() + type(err).__name__.lower():
            raise CheckpointError(
                f"{resume}: cannot resume ({str(err).splitlines()[0]}); "
                "delete it to restart the phase"
            ) from None
        raise


#: Attributes through which callbacks name the files they write.
OUTPUT_ATTRIBUTES = ("out_dir", "out_path", "png_path")


def redirect_file_outputs(callbacks) -> None:
    """On DDP ranks other than 0: point the callbacks' output files to a private scratch folder.

    The callbacks still run on every rank (they may load weights or take part in collectives),
    but only rank 0 writes into the run folder: no duplicate CSV rows, no concurrent writes.
    """
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="odimo-rank-"))
    for callback in callbacks:
        for attr in OUTPUT_ATTRIBUTES:
            value = getattr(callback, attr, None)
            if isinstance(value, Path):
                folder = scratch / type(callback).__name__
                folder.mkdir(parents=True, exist_ok=True)  # writers may not create folders
                setattr(callback, attr, folder / value.name)


def maybe_compile(module: L.LightningModule, enabled: bool) -> None:
    """`compile=true`: compile the phase's network in place (`nn.Module.compile`).

    In place, so parameter names, checkpoints and state dicts are the same as without it.
    """
    model = getattr(module, "model", None)
    if enabled and model is not None and getattr(model, "_compiled_call_impl", None) is None:
        model.compile()


def checkpoint_problem(path: Path, fingerprint: str) -> str | None:
    """Why `path` cannot be resumed from (None if it can); ConfigError if another config made it."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or "state_dict" not in payload or "loops" not in payload:
            return "not a Lightning training checkpoint"
    except Exception as err:  # noqa: BLE001 - any failure to read means a damaged file
        return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:120]}"
    made_by = payload.get("odimo", {}).get("fingerprint")
    if made_by is not None and made_by != fingerprint:
        raise ConfigError(
            f"{path} was written by another config (fingerprint {made_by}, now {fingerprint}); "
            "run with force=true to start this job again, or use another sweep_name/run dir"
        )
    return None


def resume_checkpoint(ckpt_dir: Path, fingerprint: str, phase: str) -> str | None:
    """The checkpoint to resume the phase from: `last.ckpt`, else `best.ckpt`, else none.

    An unreadable checkpoint is renamed `*.corrupt` with a warning and the next one is tried, so
    a damaged `last.ckpt` restarts the phase from its best (or from scratch), never crashes it.
    """
    if is_rank_zero():
        remove_stale_temps(ckpt_dir)
    for name in ("last.ckpt", "best.ckpt"):
        path = ckpt_dir / name
        if not path.is_file():
            continue
        problem = checkpoint_problem(path, fingerprint)
        if problem is None:
            print(f"[{phase}] resuming from {path}")
            return str(path)
        message = f"[{phase}] {path} is unreadable ({problem}); "
        warnings.warn(message + "trying the previous good checkpoint", RuntimeWarning, stacklevel=2)
        print(message + "trying the previous good checkpoint")
        if is_rank_zero():
            path.replace(path.with_suffix(".corrupt"))
    return None


def save_state(path: Path, module: torch.nn.Module, info: dict[str, Any]) -> None:
    """Write a phase result (model weights + info) atomically, on global rank 0 only."""
    if is_rank_zero():
        atomic_torch_save({"state_dict": module.state_dict(), "info": info}, path)


def load_state(path: Path, module: torch.nn.Module) -> dict:
    """Load a phase result saved by `save_state`; CheckpointError naming the file otherwise."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(payload["state_dict"])
    except Exception as err:  # noqa: BLE001 - any failure means the file cannot be used
        raise CheckpointError(
            f"{path}: cannot load ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); delete it to "
            "recompute that phase"
        ) from None
    return payload.get("info", {})
