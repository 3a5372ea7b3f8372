# SPDX-License-Identifier: Apache-2.0
"""Run a classifier over a split in order and keep its logits (the cascade's only input).

Two kinds of classifier: a finished odimo run (its deployed mapped network `final/model.pt` on
its own dataset, rebuilt from `config.yaml`), or a torchvision classifier by name with a local
weights file, for users who cascade their own ImageNet/CIFAR models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from odimo.analysis.sweep import read_job
from odimo.cascade.preds import (
    noise_preds_path,
    preds_path,
    save_noisy_predictions,
    save_predictions,
    write_info,
)
from odimo.errors import CheckpointError, ConfigError, OdimoError
from odimo.hw.analog import NoiseConfig
from odimo.lit.chip import draw_summary, noisy_logits
from odimo.models import load_mapped
from odimo.nn.mapping import quant_layers
from odimo.quant.adc import readouts


@torch.no_grad()
def predict_loader(
    model: nn.Module, loader: DataLoader, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Logits [N, C] float32 and labels [N] int64 of every batch, in loader order (eval mode)."""
    model = model.eval().to(device)
    logits, labels = [], []
    for x, y in loader:
        logits.append(model(x.to(device)).float().flatten(1).cpu())
        labels.append(y.cpu())
    return torch.cat(logits).numpy(), torch.cat(labels).to(torch.int64).numpy()


@torch.no_grad()
def predict_images(
    model: nn.Module, images: torch.Tensor, batch_size: int = 512, device: str = "cpu"
) -> np.ndarray:
    """Logits of a tensor of images [N, C, H, W] (eval mode), float32."""
    model = model.eval().to(device)
    out = [
        model(images[i : i + batch_size].to(device)).float().flatten(1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).numpy()


def split_loader(datamodule: Any, split: str) -> DataLoader:
    """The datamodule's loader of `split` (val or test); refuses one that shuffles."""
    datamodule.setup("test" if split == "test" else "validate")
    loader = datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()
    if isinstance(loader.sampler, torch.utils.data.RandomSampler):
        raise ConfigError(f"the {split} loader shuffles: predictions must follow split order")
    return loader


def split_images(datamodule: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All images [N, C, H, W] and labels [N] of a split, in order (for the memory stream)."""
    xs, ys = zip(*split_loader(datamodule, split), strict=True)
    return torch.cat(xs), torch.cat(ys)


@dataclass
class RunClassifier:
    """A finished odimo run: its deployed network, datamodule and metrics."""

    model: nn.Module
    datamodule: Any
    metrics: dict[str, Any]
    config: DictConfig


def load_run_classifier(
    run_dir: str | Path, batch_size: int | None = None, num_workers: int = 0
) -> RunClassifier:
    """Rebuild a run's deployed network and its datamodule (same split, same seed)."""
    run_dir = Path(run_dir)
    if not (run_dir / "final" / "model.pt").is_file():
        raise CheckpointError(
            f"{run_dir} has no final/model.pt: pass the folder of a finished run (with DONE)"
        )
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{run_dir} has no config.yaml: is it an odimo run folder?")
    model, _, _ = load_mapped(run_dir / "final" / "model.pt")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    dm_cfg = OmegaConf.to_container(cfg.dataset.datamodule, resolve=True)
    dm_cfg["num_workers"] = num_workers
    if batch_size is not None:
        dm_cfg["eval_batch_size"] = batch_size
    datamodule = instantiate(dm_cfg)
    metrics_path = run_dir / "metrics.json"
    metrics = {}
    if metrics_path.is_file():
        import json

        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    return RunClassifier(model, datamodule, metrics, cfg)


class InputAdapter(nn.Module):
    """Adapts the datamodule's [0, 1] images to a foreign classifier: grey → RGB, resize, and
    per-channel normalisation, then runs it."""

    def __init__(
        self,
        model: nn.Module,
        channels: int | None = None,
        size: Sequence[int] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.channels = channels
        self.size = None if size is None else tuple(int(s) for s in size)
        self.register_buffer("mean", None if mean is None else torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", None if std is None else torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels is not None and x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1) if x.shape[1] == 1 else x
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.model(x)


#: InputAdapter settings, as keys of the predict config's `torchvision` block and of info.json.
ADAPTER_KEYS = ("channels", "size", "mean", "std")


def torchvision_classifier(name: str, weights: str | Path, num_classes: int) -> nn.Module:
    """A torchvision classifier by name with its state dict from a local file."""
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError(f"unknown torchvision classifier {name!r} (see torchvision.models)")
    path = Path(weights)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        model.load_state_dict(state)
    except Exception as err:  # noqa: BLE001 - unreadable file or mismatched keys alike
        first = (str(err).splitlines() or [""])[0]
        raise CheckpointError(f"{path} does not load into {name}: {first}") from None
    return model


def finite_or_none(value: Any) -> float | None:
    """A finite float, or None (for JSON)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else None


def load_classifier(info: dict[str, Any], num_workers: int = 0) -> tuple[nn.Module, Any]:
    """The classifier and datamodule behind a predictions folder's info.json (either source)."""
    if info.get("source") == "run":
        clf = load_run_classifier(info["run_dir"], num_workers=num_workers)
        return clf.model, clf.datamodule
    if info.get("source") == "torchvision":
        spec = info["classifier"]
        net = torchvision_classifier(spec["name"], spec["weights"], int(info["num_classes"]))
        model = InputAdapter(net, **{k: spec.get(k) for k in ADAPTER_KEYS})
        return model, instantiate({**info["datamodule"], "num_workers": num_workers})
    raise CheckpointError(f"predictions of unknown source {info.get('source')!r}")


#: metrics.json key of each split's deployed accuracy.
METRIC_OF_SPLIT = {"val": "final/val/acc_hard", "test": "final/test/acc_hard"}


def check_accuracy(split: str, acc: float, n: int, metrics: dict[str, Any]) -> None:
    """The accuracy of the cached logits must equal the run's own final evaluation."""
    expected = metrics.get(METRIC_OF_SPLIT[split])
    if expected is None:
        return
    if abs(acc - float(expected)) > 0.5 / n:
        raise OdimoError(
            f"{split} accuracy of the deployed network is {acc:.4%} but metrics.json says "
            f"{float(expected):.4%}: the run's data or model changed since it finished "
            "(check_metrics=false skips this check)"
        )


def read_out_noise(model: nn.Module) -> NoiseConfig | None:
    """The deployment noise of the network's analog read-out (None without one)."""
    if not readouts(model):
        return None
    return next(iter(quant_layers(model).values())).platform.analog.noise


def predict_finished_run(
    run_dir: Path,
    splits: Sequence[str],
    batch_size: int,
    num_workers: int = 0,
    device: str = "cpu",
    check_metrics: bool = True,
    noise_draws: int = 0,
) -> dict[str, Any]:
    """Predictions of a finished odimo run, written under `<run_dir>/preds/` with its info.

    With `check_metrics`, each split's accuracy must equal the run's own final evaluation.
    With `noise_draws` and a network that reads out through the analog ADC, each split's
    logits under the platform's read-out noise are saved too (`preds_<split>_noise.npz`, seeded
    draws 0..n-1 as `odimo.lit.chip` draws them) with their accuracy (`<split>_acc_chip_mean/
    std`) and the noise in the info (`noise`); the plain logits are the noiseless chip's.
    """
    if not run_dir.is_dir():
        raise ConfigError(f"run_dir {run_dir} is not a directory")
    clf = load_run_classifier(run_dir, batch_size, num_workers)
    info: dict[str, Any] = {"source": "run", "run_dir": str(run_dir)}
    for split in splits:
        logits, labels = predict_loader(clf.model, split_loader(clf.datamodule, split), device)
        save_predictions(preds_path(run_dir, split), logits, labels)
        acc = float((logits.argmax(1) == labels).mean())
        if check_metrics:
            check_accuracy(split, acc, len(labels), clf.metrics)
        info[f"{split}_acc"] = acc
        info[f"{split}_n"] = len(labels)
        noise = read_out_noise(clf.model)
        noise_path = noise_preds_path(run_dir, split)
        if noise_draws > 0 and noise is not None:
            loader = split_loader(clf.datamodule, split)
            noisy = noisy_logits(clf.model.to(device), loader, noise, noise_draws).numpy()
            save_noisy_predictions(noise_path, noisy, labels)
            res = draw_summary((noisy.argmax(2) == labels).mean(1))
            info[f"{split}_acc_chip_mean"], info[f"{split}_acc_chip_std"] = res["mean"], res["std"]
            info["noise"] = {"sigma_lsb": noise.sigma_lsb, "snr": noise.snr, "draws": noise_draws}
        else:
            noise_path.unlink(missing_ok=True)  # never a stale file of an earlier call
        info["read_out"] = noise is not None  # False: no analog read-out, noiseless by design
        info["num_classes"] = int(logits.shape[1])
    job = read_job(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    info.update(
        name=job.get("label") or run_dir.name,
        model=str(clf.config.model.name),
        dataset=str(clf.config.dataset.name),
        latency_ms=finite_or_none(clf.metrics.get("final/cost/latency_hard_ms")),
        energy_uj=finite_or_none(clf.metrics.get("final/cost/energy_hard_uj")),
        platform=clf.metrics.get("platform"),  # identity: name, constants, fingerprint
    )
    write_info(run_dir, info)
    return info
