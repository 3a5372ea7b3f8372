# SPDX-License-Identifier: Apache-2.0
"""Running one phase: a Trainer with checkpoints, logging, resume and a DONE marker per phase."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    ModelCheckpoint,
    RichProgressBar,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from odimo.callbacks import FiniteLossGuard, load_module_state
from odimo.errors import CheckpointError, ConfigError


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
) -> L.Trainer:
    """Train a phase, resuming from `last.ckpt` if a previous attempt left one.

    Checkpoints and early stopping follow `module.monitor` (the deployed network's accuracy).
    At the end the best checkpoint's weights are loaded into `module`, unless `restore_best`
    is False (the search's hand-over callback chooses what to keep).
    """
    ckpt_dir = phase_dir / "checkpoints"
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor=module.monitor,
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
    extra: list[L.Callback] = [checkpoint, latest, FiniteLossGuard(cfg.callbacks.nonfinite_every)]
    if int(phase_cfg.patience) > 0:
        extra.append(EarlyStopping(module.monitor, mode="max", patience=int(phase_cfg.patience)))
    trainer = L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        max_epochs=int(phase_cfg.epochs),
        default_root_dir=str(phase_dir),
        logger=make_loggers(cfg, phase_dir, phase, job_name),
        callbacks=[*callbacks, *extra, *progress_callbacks(cfg)],
        enable_progress_bar=str(cfg.callbacks.progress) != "none",
    )
    last = ckpt_dir / "last.ckpt"
    resume = str(last) if last.is_file() else None
    if resume:
        print(f"[{phase}] resuming from {last}")
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    except (KeyError, RuntimeError, EOFError) as err:
        if resume and "checkpoint" in str(err).lower() + type(err).__name__.lower():
            raise CheckpointError(
                f"{last}: cannot resume ({str(err).splitlines()[0]}); "
                "delete it to restart the phase"
            ) from None
        raise
    finally:
        if cfg.logger.wandb.enabled:
            finish_wandb()
    if restore_best and checkpoint.best_model_path:
        load_module_state(module, checkpoint.best_model_path)
    return trainer


def warmup_key(cfg: DictConfig) -> str:
    """Cache key of the float warm-up: dataset, model, seed and warm-up recipe."""
    recipe = {
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "seed": int(cfg.seed),
        "warmup": OmegaConf.to_container(cfg.warmup, resolve=True),
    }
    recipe["dataset"]["datamodule"].pop("num_workers", None)
    digest = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    return f"{cfg.dataset.name}_{cfg.model.name}_seed{cfg.seed}_{digest}"


def save_state(path: Path, module: torch.nn.Module, info: dict) -> None:
    """Write a phase result (model weights + info) atomically."""
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": module.state_dict(), "info": info}, tmp)
    tmp.replace(path)


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
