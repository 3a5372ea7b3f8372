# SPDX-License-Identifier: Apache-2.0
"""The phases of the main job: cached float warm-up, ODiMO search, training of a mapped network.

Each phase function builds its LightningModule, skips the work a previous attempt finished
(DONE marker, cache entry) and otherwise trains through `odimo.pipeline.fit.fit_phase`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from odimo.callbacks import CostLogger, MappingHandover, MappingMedia, search_schedules
from odimo.errors import ConfigError
from odimo.hw import get_platform
from odimo.hw.analog import NoiseConfig
from odimo.io import cache_lock, config_fingerprint, is_rank_zero, rank_zero_write
from odimo.lit import FinetuneModule, SearchModule, WarmupModule
from odimo.models import ModelSpec, build_model, fold_float_into
from odimo.nn import (
    NetworkCost,
    Regularizer,
    TargetRegularizer,
    hard_mapping,
    make_regularizer,
    model_mapping,
    set_sampling,
    set_temperature,
)
from odimo.pipeline.fit import (
    eval_trainer,
    fit_phase,
    load_state,
    save_state,
    trainer_recipe,
)


def warmup_recipe(cfg: DictConfig) -> dict:
    """Everything that changes the float warm-up's weights: dataset (but its loader workers),
    model, seed, the warm-up recipe and the trainer (`odimo.pipeline.fit.trainer_recipe`:
    precision, strategy, devices, nodes, global batch, ...)."""
    recipe = {
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "seed": int(cfg.seed),
        "warmup": OmegaConf.to_container(cfg.warmup, resolve=True),
        "trainer": trainer_recipe(cfg),
    }
    recipe["dataset"]["datamodule"].pop("num_workers", None)
    return recipe


def warmup_key(cfg: DictConfig) -> str:
    """Cache folder name of the float warm-up: readable names + the recipe's fingerprint."""
    digest = config_fingerprint(warmup_recipe(cfg))
    return f"{cfg.dataset.name}_{cfg.model.name}_seed{cfg.seed}_{digest}"


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
            stamp = {**info, "key": cache.name, "recipe": warmup_recipe(cfg)}
            rank_zero_write(cache / "DONE", json.dumps(stamp) + "\n")
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
    module.train_noise = training_noise(cfg, platform)
    module.recalibrate_every = recalibration(cfg)
    if (phase_dir / "DONE").is_file():
        load_state(phase_dir / "result.pt", model)
        print(f"[search] done already; reusing {phase_dir / 'result.pt'}")
        return module
    phase_dir.mkdir(parents=True, exist_ok=True)
    target = getattr(regularizer, "target", None)
    if target is not None:
        derive_target_strength(regularizer, model, network, datamodule, phase_dir / "target.json")
    plots = bool(cfg.callbacks.plots)
    callbacks = [
        *search_schedules(
            OmegaConf.to_container(s.temperature, resolve=True),
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


def training_noise(cfg: DictConfig, platform) -> NoiseConfig | None:
    """`train.noise`: the platform's deployment noise × `train.noise_scale`, drawn afresh every
    training batch (None when off)."""
    train = cfg.get("train") or {}
    if not train.get("noise", False):
        return None
    analog = platform.analog
    if analog is None or not analog.enabled:
        raise ConfigError(
            "train.noise=true needs an analog read-out: platform.analog.adc is null "
            "(drop the override or set train.noise=false)"
        )
    return analog.noise.scaled(float(train.get("noise_scale", 1.0)))


#: Seed of the noise draw checkpoints are chosen under: outside the report's draws
#: (`eval.noise_seed` + 0 … noise_draws − 1), so the reported validation accuracy under noise
#: is not the draw the choice was made on.
SELECT_SEED = 10_007


def selection_noise(cfg: DictConfig, platform) -> NoiseConfig | None:
    """The noise a mapped network's best checkpoint is chosen under: the platform's deployment
    noise (not × `train.noise_scale`) when training is chip-aware (`train.noise`) and
    `train.select_under_noise` is on; None: by noiseless validation accuracy."""
    train = cfg.get("train") or {}
    if training_noise(cfg, platform) is None or not train.get("select_under_noise", True):
        return None
    return platform.analog.noise


def recalibration(cfg: DictConfig) -> int:
    """`train.recalibrate_every`: training batches between re-fits of the read-out gains."""
    every = (cfg.get("train") or {}).get("recalibrate_every", 0)
    return checked_recalibration(every, "train.recalibrate_every")


def checked_recalibration(every, key: str) -> int:
    """`every`, the value of config key `key`: training batches between re-fits of the
    read-out gains, an int >= 0 (0: never); anything else is one config-error line."""
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
        raise ConfigError(f"{key} must be an int >= 0 (batches; 0 = never), got {every!r}")
    return every


def train_mapped(
    cfg: DictConfig, model, spec: ModelSpec, datamodule, phase_dir: Path, phase: str, job: str
) -> FinetuneModule:
    """Train a network with a frozen mapping (fine-tune or baseline); best weights loaded."""
    phase_cfg = cfg.finetune if phase == "finetune" else cfg.baseline_train
    module = FinetuneModule(
        model, spec.num_classes, OmegaConf.to_container(phase_cfg.optim, resolve=True)
    )
    platform = get_platform(cfg.platform)
    module.train_noise = training_noise(cfg, platform)
    module.recalibrate_every = recalibration(cfg)
    module.select_under(selection_noise(cfg, platform), SELECT_SEED)
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
