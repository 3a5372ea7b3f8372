# SPDX-License-Identifier: Apache-2.0
"""The cascade as it would run: little on the whole batch, big only on the uncertain sub-batch.

Routing uses the same confidence functions as the offline analysis (on the host, in float64),
so its accuracy and big-call share equal the offline curve's at the same threshold.
"""

from __future__ import annotations

import lightning.pytorch as L
import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from odimo.cascade.routing import sent_prediction
from odimo.cascade.scores import DEPLOYABLE, canonical, confidence
from odimo.errors import ConfigError


class CascadeModule(L.LightningModule):
    """Evaluate a (little, big) cascade with `trainer.test` / `trainer.validate`.

    Logs `<stage>/acc_cascade` and `<stage>/p_big` (share of inputs the big network ran on).

    Args:
        little: the cheap network, run on every input.
        big: the expensive network, run where little's confidence < threshold.
        score: maxp, margin or entropy (the oracle needs labels: offline only).
        threshold: routing threshold in [0, 1].
        postcheck: when big ran, keep the more confident of the two answers.
    """

    def __init__(
        self, little: nn.Module, big: nn.Module, score: str, threshold: float, postcheck: bool
    ) -> None:
        super().__init__()
        self.score = canonical(score)
        if self.score not in DEPLOYABLE:
            raise ConfigError(f"score {score!r} cannot route online (choose from {DEPLOYABLE})")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ConfigError(f"threshold must lie in [0, 1], got {threshold!r}")
        self.little, self.big = little, big
        self.threshold = float(threshold)
        self.postcheck = bool(postcheck)
        self.acc = MeanMetric()
        self.p_big = MeanMetric()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Predicted classes [B] and the mask [B] of inputs the big network ran on."""
        logits = self.little(x)
        conf = confidence(logits.detach().double().cpu().numpy(), self.score)
        pred = logits.argmax(dim=1)
        to_big = torch.from_numpy(conf < self.threshold).to(x.device)
        if to_big.any():
            logits_big = self.big(x[to_big])
            sent = logits_big.argmax(dim=1)
            if self.postcheck:
                conf_big = confidence(logits_big.detach().double().cpu().numpy(), self.score)
                chosen = sent_prediction(
                    pred[to_big].cpu().numpy(),
                    sent.cpu().numpy(),
                    conf[to_big.cpu().numpy()],
                    conf_big,
                    True,
                )
                sent = torch.from_numpy(np.asarray(chosen)).to(x.device)
            pred = pred.clone()
            pred[to_big] = sent
        return pred, to_big

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        pred, to_big = self(x)
        self.acc.update((pred == y).float())
        self.p_big.update(to_big.float())
        self.log(f"{stage}/acc_cascade", self.acc, on_step=False, on_epoch=True)
        self.log(f"{stage}/p_big", self.p_big, on_step=False, on_epoch=True)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")
