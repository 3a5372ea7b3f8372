# SPDX-License-Identifier: Apache-2.0
"""Distillation from a frozen teacher (`train.distill`): the loss, the mix, the frozen teacher."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from odimo.errors import ConfigError
from odimo.lit import FinetuneModule
from odimo.lit.distill import Distillation, distillation_loss
from odimo.lit.modules import step_loss


def _kd_numpy(student: np.ndarray, teacher: np.ndarray, t: float) -> float:
    """T²·mean over the batch of Σ_c p_t (log p_t − log p_s), softmaxes at temperature T."""

    def log_softmax(z):
        z = z / t
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    lt, ls = log_softmax(teacher), log_softmax(student)
    return float(t * t * (np.exp(lt) * (lt - ls)).sum(1).mean())


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_distillation_loss_is_the_tempered_kl_of_teacher_to_student(t) -> None:
    g = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(16, 10, generator=g) * 3, torch.randn(16, 10, generator=g) * 3
    got = float(distillation_loss(student, teacher, t))
    want = _kd_numpy(student.double().numpy(), teacher.double().numpy(), t)
    assert got == pytest.approx(want, rel=1e-5)
    assert float(distillation_loss(teacher, teacher, t)) == pytest.approx(0.0, abs=1e-6)


class _Teacher(nn.Module):
    """A tiny network with BatchNorm: its statistics move if it ever runs in train mode."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.fc(x))


def _student_and_batch():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(6, 4))
    x, y = torch.randn(32, 6), torch.randint(0, 4, (32,))
    return student, (x, y)


def test_the_mix_is_ce_and_distillation_and_only_the_student_learns() -> None:
    teacher = _Teacher()
    teacher.bn.running_mean.uniform_(-1, 1)  # eval mode must use these, not batch statistics
    stats = teacher.bn.running_mean.clone()
    distill = Distillation(teacher, weight=0.3, temperature=2.0)
    student, (x, y) = _student_and_batch()
    module = FinetuneModule(student, 4, {})
    module.distill = distill
    module.train()  # what the trainer does: the teacher must stay in eval mode
    assert not teacher.training and "distill" not in str(list(module.state_dict()))
    total, task, reg, logits = step_loss(module.model, (x, y), distill=module.distill)
    with torch.no_grad():
        t_logits = teacher.eval()(x)
    ce = F.cross_entropy(logits, y)
    kd = _kd_numpy(logits.detach().double().numpy(), t_logits.double().numpy(), 2.0)
    assert total.item() == pytest.approx(0.7 * ce.item() + 0.3 * kd, rel=1e-5)
    assert task.item() == total.item() and reg.item() == 0.0
    total.backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert torch.equal(teacher.bn.running_mean, stats)
    # the student's gradient is the gradient of the mix (an independent autograd computation)
    s2 = nn.Sequential(nn.Linear(6, 4))
    s2.load_state_dict(student.state_dict())
    out = s2(x)
    ref = 0.7 * F.cross_entropy(out, y) + 0.3 * 4.0 * F.kl_div(
        F.log_softmax(out / 2, 1), F.softmax(t_logits / 2, 1), reduction="batchmean"
    )
    ref.backward()
    for a, b in zip(student.parameters(), s2.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_weight_zero_is_cross_entropy_alone_and_weight_one_distillation_alone() -> None:
    student, batch = _student_and_batch()
    teacher = _Teacher()
    plain = step_loss(student, batch)[0]
    assert torch.equal(step_loss(student, batch, distill=Distillation(teacher, 0.0, 4.0))[0], plain)
    only = step_loss(student, batch, distill=Distillation(teacher, 1.0, 4.0))[0]
    with torch.no_grad():
        want = distillation_loss(student(batch[0]), teacher.eval()(batch[0]), 4.0)
    assert float(only) == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize(
    ("weight", "temperature", "match"),
    [(1.5, 4.0, "weight must be in"), (-0.1, 4.0, "weight must be in"), (0.5, 0.0, "> 0")],
)
def test_bad_weight_or_temperature_is_a_config_error(weight, temperature, match) -> None:
    with pytest.raises(ConfigError, match=match):
        Distillation(_Teacher(), weight, temperature)
