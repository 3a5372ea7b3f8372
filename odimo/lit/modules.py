# SPDX-License-Identifier: Apache-2.0
"""One LightningModule per phase: float warm-up, ODiMO search, fine-tune of a frozen mapping.

The loss of every phase is computed by `step_loss` (shared with the speed benchmark), so the
benchmark measures exactly what training runs.
"""

from __future__ import annotations

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from odimo.errors import TrainingDivergedError
from odimo.hw.analog import NoiseConfig
from odimo.lit.optim import make_optimizer, parameter_groups
from odimo.nn.conv import hard_mapping, polarization
from odimo.nn.network_cost import NetworkCost, Regularizer
from odimo.quant.adc import readout_noise, readouts, set_readout_noise


def step_loss(
    model: nn.Module,
    batch: tuple[Tensor, Tensor],
    network: NetworkCost | None = None,
    regularizer: Regularizer | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(total loss, task loss, regularizer loss, logits) of one training batch; no host sync."""
    x, y = batch
    logits = model(x)
    task = F.cross_entropy(logits, y)
    if regularizer is None or network is None:
        return task, task, torch.zeros_like(task), logits
    reg = regularizer(network)
    return task + reg, task, reg, logits


class PhaseModule(L.LightningModule):
    """Shared by all phases: cross-entropy, accuracy metrics, optimizers, a non-finite guard.

    Args:
        model: the network of this phase (float, search or mapped form).
        num_classes: classes of the dataset (for the accuracy metrics).
        optim: optimizer config per parameter group (see `make_optimizer`).
    """

    #: metric that checkpointing and early stopping use
    monitor = "val/acc_hard"
    #: suffix of the accuracy of the network as it will be deployed
    deployed = "hard"

    def __init__(self, model: nn.Module, num_classes: int, optim: dict):
        super().__init__()
        self.model = model
        self.optim_cfg = optim
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.register_buffer("nonfinite", torch.zeros((), dtype=torch.bool), persistent=False)
        #: Read-out noise drawn afresh every training batch (`train.noise`); None = noiseless.
        self.train_noise: NoiseConfig | None = None
        self._noise_on = False
        #: Training batches between re-fits of the read-out gains (`train.recalibrate_every`;
        #: 0: a gain once set is kept). The first batch of the phase always re-fits them.
        self.recalibrate_every = 0
        self._batches = 0
        #: Deployment read-out noise the best checkpoint is chosen under
        #: (`train.select_under_noise`): validation also runs under one seeded draw of it,
        #: logged as `val/acc_chip`, which becomes the monitor; None = noiseless selection.
        #: Set before fitting (`select_under`).
        self.select_noise: NoiseConfig | None = None
        #: Seed of that draw: the same draw every epoch, so epochs differ by their weights only.
        self.select_seed = 0
        self.val_acc_chip = MulticlassAccuracy(num_classes, average="micro")

    def select_under(self, noise: NoiseConfig | None, seed: int = 0) -> None:
        """Choose the best checkpoint by validation accuracy under `noise` (None: noiseless)."""
        self.select_noise = None if noise is None or noise.silent else noise
        self.select_seed = int(seed)
        self.monitor = "val/acc_chip" if self.select_noise is not None else type(self).monitor

    def _set_noise(self, on: bool) -> None:
        """Training batches read out with `train_noise`; evaluation noiseless (validation adds
        a seeded pass under `select_noise` when it is set, `_chip_step`)."""
        if on != self._noise_on and self.train_noise is not None:
            set_readout_noise(self.model, self.train_noise if on else None)
            self._noise_on = on

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.recalibrate_every > 0 and self._batches % self.recalibrate_every == 0:
            # the weights moved since the gains were set: this batch's forward re-fits them,
            # layer by layer, from its own partial sums (no extra pass)
            for r in readouts(self.model):
                r.reset()
        self._batches += 1
        self._set_noise(True)

    def restart_read_out_schedule(self) -> None:
        """The next training batch is the first of a re-fit period (it re-fits the gains)."""
        self._batches = 0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # a resumed phase keeps the re-fit schedule of an uninterrupted one
        checkpoint["read_out_batches"] = self._batches

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._batches = int(checkpoint.get("read_out_batches", 0))

    def on_validation_epoch_start(self) -> None:
        self._set_noise(False)
        if self.select_noise is not None:
            # seeded generators made once per epoch (the same draws every epoch), noise off:
            # `_chip_step` switches it on for the noisy pass of each batch only
            set_readout_noise(self.model, None, seed=self.select_seed)

    def on_validation_epoch_end(self) -> None:
        if self.select_noise is not None:
            set_readout_noise(self.model, None)

    def on_test_epoch_start(self) -> None:
        self._set_noise(False)

    def on_train_end(self) -> None:
        self._set_noise(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def losses(self, batch: tuple[Tensor, Tensor]):
        """(total, task, reg, logits) of a training batch."""
        return step_loss(self.model, batch)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, task, reg, logits = self.losses(batch)
        self.nonfinite |= ~torch.isfinite(loss)
        self.train_acc(logits.detach(), batch[1])
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        self.log("train/task_loss", task, on_step=False, on_epoch=True)
        self.log("train/reg_loss", reg, on_step=False, on_epoch=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def check_finite(self) -> None:
        """Raise if any training loss since the last check was NaN or infinite (one host sync)."""
        if bool(self.nonfinite):
            raise TrainingDivergedError(
                f"the training loss became NaN/inf in epoch {self.current_epoch}: lower the "
                "learning rate or the strength, or check the data; checkpoints so far are kept"
            )

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str, metric) -> None:
        x, y = batch
        logits = self.model(x)
        metric(logits, y)
        self.log(f"{stage}/loss_{self.deployed}", F.cross_entropy(logits, y))
        self.log(f"{stage}/acc_{self.deployed}", metric, prog_bar=stage == "val")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)
        if self.select_noise is not None:
            self._chip_step(batch)

    def _chip_step(self, batch: tuple[Tensor, Tensor]) -> None:
        """Validation accuracy of one seeded draw of the deployment noise (`select_under`)."""
        with readout_noise(self.model, self.select_noise):
            logits = self.model(batch[0])
        self.val_acc_chip(logits, batch[1])
        self.log("val/acc_chip", self.val_acc_chip, prog_bar=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

    def configure_optimizers(self):
        optimizer, scheduler = make_optimizer(parameter_groups(self.model), self.optim_cfg)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }


class WarmupModule(PhaseModule):
    """Float training with BatchNorm (the starting point of every search and baseline)."""

    monitor = "val/acc_float"
    deployed = "float"


class SearchModule(PhaseModule):
    """ODiMO search: loss = CE + strength·cost; validation of the soft AND the hard network.

    Args:
        network: cost model of `model` (geometry recorded once).
        regularizer: strength × cost.
        polarization: weight of the polarisation term (`odimo.nn.polarization`), added to the
            regularizer loss; 0 disables it.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optim: dict,
        network: NetworkCost,
        regularizer: Regularizer,
        polarization: float = 0.0,
    ):
        super().__init__(model, num_classes, optim)
        self.network = network
        self.regularizer = regularizer
        self.polarization = float(polarization)
        self.val_acc_soft = MulticlassAccuracy(num_classes, average="micro")

    def losses(self, batch: tuple[Tensor, Tensor]):
        total, task, reg, logits = step_loss(self.model, batch, self.network, self.regularizer)
        if self.polarization > 0:
            pol = self.polarization * polarization(self.model).to(total.device)
            total, reg = total + pol, reg + pol
        return total, task, reg, logits

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        soft = self.model(x)
        self.val_acc_soft(soft, y)
        self.log("val/loss_soft", F.cross_entropy(soft, y))
        self.log("val/acc_soft", self.val_acc_soft, prog_bar=True)
        with hard_mapping(self.model):
            self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        with hard_mapping(self.model):
            self._eval_step(batch, "test", self.test_acc)


class FinetuneModule(PhaseModule):
    """Training of a mapped network (fine-tune after the search, or a baseline mapping)."""
