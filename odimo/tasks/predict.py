# SPDX-License-Identifier: Apache-2.0
"""The predict task: cache a classifier's logits on the val and test splits, in split order.

`python tasks/predict.py run_dir=<run>` evaluates a finished run's deployed network (eval mode:
the exact deployed arithmetic) and checks its accuracy against the run's metrics.json;
`python tasks/predict.py dataset=cifar10 torchvision.name=resnet18 torchvision.weights=<file>
output_dir=<dir>` does the same for a torchvision classifier. Outputs: `<dir>/preds/preds_val.npz`,
`preds_test.npz` and `info.json` (see odimo.cascade.preds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from odimo.cascade.predict import (
    ADAPTER_KEYS,
    InputAdapter,
    finite_or_none,
    predict_finished_run,
    predict_loader,
    split_loader,
    torchvision_classifier,
)
from odimo.cascade.preds import SPLITS, preds_path, save_predictions, write_info
from odimo.errors import ConfigError


def _splits(cfg: DictConfig) -> list[str]:
    splits = list(cfg.get("splits") or [])
    bad = [s for s in splits if s not in SPLITS]
    if not splits or bad:
        raise ConfigError(f"splits must be a non-empty subset of {list(SPLITS)}, got {splits}")
    return splits


def predict_torchvision(cfg: DictConfig, splits: list[str]) -> dict[str, Any]:
    """Predictions of a torchvision classifier on a dataset group, under `<output_dir>/preds/`."""
    tv = cfg.torchvision
    if cfg.get("dataset") is None:
        raise ConfigError("a torchvision classifier needs a dataset: add dataset=<name>")
    if tv.get("weights") in (None, "") or cfg.get("output_dir") in (None, ""):
        raise ConfigError("torchvision.name needs torchvision.weights=<file> and output_dir=<dir>")
    out = Path(str(cfg.output_dir)).expanduser().resolve()
    num_classes = int(cfg.dataset.num_classes)
    net = torchvision_classifier(str(tv.name), str(tv.weights), num_classes)
    adapter = InputAdapter(net, **{k: tv.get(k) for k in ADAPTER_KEYS})
    dm_cfg = OmegaConf.to_container(cfg.dataset.datamodule, resolve=True)
    dm_cfg.update(num_workers=int(cfg.num_workers), eval_batch_size=int(cfg.batch_size))
    datamodule = instantiate(dm_cfg)
    info: dict[str, Any] = {
        "source": "torchvision",
        # what load_classifier needs to rebuild the classifier and its data (memory streams)
        "classifier": {
            "name": str(tv.name),
            "weights": str(Path(str(tv.weights)).expanduser().resolve()),
            **{k: OmegaConf.to_container(tv, resolve=True).get(k) for k in ADAPTER_KEYS},
        },
        "datamodule": dm_cfg,
    }
    for split in splits:
        logits, labels = predict_loader(adapter, split_loader(datamodule, split), cfg.device)
        save_predictions(preds_path(out, split), logits, labels)
        info[f"{split}_acc"] = float((logits.argmax(1) == labels).mean())
        info[f"{split}_n"] = len(labels)
    info.update(
        name=str(tv.get("label") or tv.name),
        model=str(tv.name),
        dataset=str(cfg.dataset.name),
        num_classes=num_classes,
        latency_ms=finite_or_none(tv.get("latency_ms")),
        energy_uj=finite_or_none(tv.get("energy_uj")),
    )
    write_info(out, info)
    return {**info, "output_dir": str(out)}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Write the predictions; returns the info (accuracy per split, costs, paths)."""
    splits = _splits(cfg)
    has_run = cfg.get("run_dir") not in (None, "")
    has_tv = cfg.get("torchvision") is not None and cfg.torchvision.get("name") not in (None, "")
    if has_run == has_tv:
        raise ConfigError(
            "give exactly one of run_dir=<finished run> or torchvision.name=<classifier>"
        )
    if has_run:
        run_dir = Path(str(cfg.run_dir)).expanduser().resolve()
        args = (int(cfg.batch_size), int(cfg.num_workers), cfg.device, bool(cfg.check_metrics))
        draws = int(cfg.get("noise_draws", 0))
        info = predict_finished_run(run_dir, splits, *args, noise_draws=draws)
    else:
        info = predict_torchvision(cfg, splits)
    accs = ", ".join(
        f"{s} {100 * info[f'{s}_acc']:.2f} % ({info[f'{s}_n']})"
        for s in splits
        if f"{s}_acc" in info
    )
    cost = " ".join(
        f"{k} {info[k]:.4g}" for k in ("latency_ms", "energy_uj") if info.get(k) is not None
    )
    print(f"{info['name']}: {accs}{'; ' + cost if cost else ''}")
    chip = ", ".join(
        f"{s} {100 * info[f'{s}_acc_chip_mean']:.2f} ± {100 * info[f'{s}_acc_chip_std']:.2f} %"
        for s in splits
        if f"{s}_acc_chip_mean" in info
    )
    if chip:
        print(f"  under read-out noise ({cfg.get('noise_draws')} seeded draws): {chip}")
    return info
