# SPDX-License-Identifier: Apache-2.0
"""Distillation from the float warm-up network (`train.distill`): the loss, its gradient, the
teacher kept frozen and outside the trained module, and its wiring into the phases."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from odimo.errors import ConfigError
from odimo.lit import Distillation, FinetuneModule, step_loss
from odimo.pipeline.phases import distillation
from odimo.tasks.train import run
from tests.tasks.helpers import train_cfg


def _kd_by_hand(student: torch.Tensor, teacher: torch.Tensor, t: float) -> float:
    """T²·mean over samples of Σ_c p_c·(log p_c − log q_c), p = softmax(teacher/T),
    q = softmax(student/T), in float64 from the definitions."""
    total = 0.0
    for s_row, t_row in zip(student.double().tolist(), teacher.double().tolist(), strict=True):
        zs = [v / t for v in s_row]
        zt = [v / t for v in t_row]
        ls = math.log(sum(math.exp(v) for v in zs))
        lt = math.log(sum(math.exp(v) for v in zt))
        for a, b in zip(zs, zt, strict=True):
            p = math.exp(b - lt)
            total += p * ((b - lt) - (a - ls))
    return t * t * total / len(student)


def test_the_distilled_loss_equals_its_definition():
    torch.manual_seed(0)
    teacher = nn.Linear(6, 5)
    x = torch.randn(7, 6)
    logits = torch.randn(7, 5)
    ce = torch.tensor(1.25)
    kd = Distillation(teacher, weight=0.7, temperature=3.0)
    got = float(kd(x, logits, ce))
    want = 0.3 * 1.25 + 0.7 * _kd_by_hand(logits, teacher(x).detach(), 3.0)
    assert got == pytest.approx(want, rel=1e-6)
    # the student equal to the teacher: no distillation term, only the CE share
    same = Distillation(teacher, weight=0.7, temperature=3.0)
    assert float(same(x, teacher(x).detach(), ce)) == pytest.approx(0.3 * 1.25, abs=1e-6)


def test_training_on_the_distilled_loss_moves_the_student_to_the_teacher():
    """weight 1: the gradient is the teacher-matching one only; a few steps bring the student's
    softened outputs to the teacher's, which cross-entropy alone on wrong labels would not."""
    torch.manual_seed(1)
    teacher, student = nn.Linear(4, 3), nn.Linear(4, 3)
    x = torch.randn(64, 4)
    y = torch.zeros(64, dtype=torch.long)  # labels the teacher does not follow
    kd = Distillation(teacher, weight=1.0, temperature=2.0)
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    before = _kd_by_hand(student(x).detach(), teacher(x).detach(), 2.0)
    for _ in range(200):
        opt.zero_grad()
        loss, task, reg, _ = step_loss(student, (x, y), distill=kd)
        loss.backward()
        opt.step()
    after = _kd_by_hand(student(x).detach(), teacher(x).detach(), 2.0)
    assert after < 0.01 * before
    assert float(reg) == 0.0 and float(task) == pytest.approx(float(loss.detach()))
    assert all(p.grad is None for p in teacher.parameters())  # the teacher is not trained


def test_the_teacher_stays_frozen_and_outside_the_module():
    teacher = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    student = nn.Linear(4, 3)
    module = FinetuneModule(student, 3, {"weights": {"name": "sgd", "lr": 0.1}})
    module.distill = Distillation(teacher, 0.5, 4.0)
    module.train()
    assert not teacher.training  # BatchNorm keeps its running statistics
    assert not any(p.requires_grad for p in teacher.parameters())
    assert set(module.state_dict()) == {f"model.{k}" for k in student.state_dict()}
    assert {id(p) for p in module.parameters()} == {id(p) for p in student.parameters()}


@pytest.mark.parametrize(
    "override",
    ["train.distill.weight=1.5", "train.distill.weight=-0.1", "train.distill.temperature=0"],
)
def test_bad_distillation_settings_are_refused_with_the_keys_to_fix(tmp_path, override):
    with pytest.raises(ConfigError, match="train.distill.weight must be in"):
        distillation(train_cfg(tmp_path, override), nn.Linear(2, 2))


def test_weight_zero_is_plain_cross_entropy(tmp_path):
    assert distillation(train_cfg(tmp_path), nn.Linear(2, 2)) is None
    kd = distillation(train_cfg(tmp_path, "train.distill.weight=0.4"), nn.Linear(2, 2))
    assert (kd.weight, kd.temperature) == (0.4, 4.0)


def test_a_baseline_and_a_fine_tune_distill_from_the_warmup(tmp_path, monkeypatch):
    """Every training batch of the baseline, search and fine-tune goes through the distilled
    loss, with the cached float warm-up network (its weights, in eval mode) as the teacher."""
    calls = []
    original = Distillation.__call__

    def spy(self, x, logits, task):
        calls.append((self.teacher, self.teacher.training, len(x)))
        return original(self, x, logits, task)

    monkeypatch.setattr(Distillation, "__call__", spy)
    cfg = train_cfg(tmp_path, "train.distill.weight=0.5", run="search")
    images = int(cfg.dataset.datamodule.limit_train)
    run(cfg)
    # one epoch each of search and fine-tune (debug preset): every training image twice
    assert sum(n for _, _, n in calls) == images * (cfg.search.epochs + cfg.finetune.epochs)
    assert not any(training for _, training, _ in calls)
    teacher = calls[0][0]
    assert all(t is teacher for t, _, _ in calls)
    cache = next((tmp_path / "cache" / "warmup").iterdir())
    state = torch.load(cache / "float.pt", weights_only=True)["state_dict"]
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, state[name]), name
    calls.clear()
    cfg = train_cfg(tmp_path, "phases=[warmup,baseline]", "train.distill.weight=0.5", run="b")
    run(cfg)
    assert sum(n for _, _, n in calls) == images * cfg.baseline_train.epochs
