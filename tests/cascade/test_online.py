# SPDX-License-Identifier: Apache-2.0
"""The online cascade module equals the offline curve at the same threshold."""

from __future__ import annotations

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from odimo.cascade.online import CascadeModule
from odimo.cascade.predict import predict_loader
from odimo.cascade.routing import at_threshold, pair_outputs
from odimo.errors import ConfigError


class CountingLinear(nn.Linear):
    """A linear classifier that counts the inputs it sees."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return super().forward(x.flatten(1))


def _data(n: int = 600, d: int = 12, c: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, c, generator=g)
    return x, (x @ w).argmax(1)


@pytest.mark.parametrize(("score", "postcheck"), [("maxp", False), ("entropy", True)])
def test_online_equals_offline(score: str, postcheck: bool) -> None:
    torch.manual_seed(0)
    x, y = _data()
    little, big = CountingLinear(12, 5), CountingLinear(12, 5)
    with torch.no_grad():  # big knows the task better than little
        big.weight.copy_(torch.linalg.lstsq(x, nn.functional.one_hot(y).float()).solution.T)
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    logits_l, labels = predict_loader(little, loader)
    logits_b, _ = predict_loader(big, loader)
    outputs = pair_outputs(
        logits_l.astype(np.float64), logits_b.astype(np.float64), labels, score, postcheck
    )
    threshold = float(np.quantile(outputs.conf, 0.4))  # ~40 % to big
    acc, p_big = at_threshold(outputs, threshold)
    module = CascadeModule(little, big, score, threshold, postcheck)
    little.seen = big.seen = 0
    trainer = L.Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    result = trainer.test(module, loader, verbose=False)[0]
    assert result["test/acc_cascade"] == pytest.approx(acc, abs=1e-6)
    assert result["test/p_big"] == pytest.approx(p_big, abs=1e-6)
    assert little.seen == len(x)
    assert big.seen == round(p_big * len(x))  # big ran only on the uncertain sub-batches
    assert 0 < p_big < 1


def test_online_refuses_the_oracle_and_bad_thresholds() -> None:
    net = nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="cannot route online"):
        CascadeModule(net, net, "oracle", 0.5, False)
    with pytest.raises(ConfigError, match="threshold"):
        CascadeModule(net, net, "maxp", 1.5, False)
