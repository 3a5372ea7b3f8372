# SPDX-License-Identifier: Apache-2.0
"""Knowledge distillation from a finished run's network, with exact analog sums (`train.distill`).

Chip-aware training (the 6-bit read-out and its noise in the forward) costs the student
capacity; distilling from a network that computes without the read-out gives it the ideal
network's soft targets to approach (noise injection with a noiseless teacher: Zhou et al.,
"Noisy Machines", 2020). The teacher is any finished run of the same dataset, typically the
same network trained with exact sums (`platform.analog.adc=null`); it runs frozen, in eval
mode, on exact analog sums, whatever platform it was trained on (`odimo.pipeline.teacher`
loads it).

Training loss: (1 − α)·CE(student, y) + α·T²·KL(softmax(teacher/T) ‖ softmax(student/T))
(Hinton et al., 2015), α = `train.distill.weight`, T = `train.distill.temperature`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odimo.errors import ConfigError


def distillation_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """T²·KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch."""
    t = float(temperature)
    log_p_student = F.log_softmax(student.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher.float() / t, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * t * t


def checked_mix(weight, temperature) -> tuple[float, float]:
    """(α, T) of `train.distill` as floats; one config-error line unless α ∈ [0, 1], T > 0."""
    try:
        alpha, t = float(weight), float(temperature)
    except (TypeError, ValueError):
        raise ConfigError(
            f"train.distill.weight and .temperature must be numbers, got {weight!r}, "
            f"{temperature!r}"
        ) from None
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"train.distill.weight must be in [0, 1], got {weight!r}")
    if not t > 0.0:
        raise ConfigError(f"train.distill.temperature must be > 0, got {temperature!r}")
    return alpha, t


class Distillation(nn.Module):
    """A frozen teacher and the mix of its loss with the task loss.

    The teacher is held outside the module tree: it stays in eval mode (BatchNorm statistics,
    dropout) whatever mode the training module is put in, takes no gradient, stays out of the
    phase's checkpoints (the run config names it) and follows the student's device on its
    first batch.
    """

    def __init__(self, teacher: nn.Module, weight: float, temperature: float):
        super().__init__()
        self.weight, self.temperature = checked_mix(weight, temperature)
        self._teacher = (teacher.eval().requires_grad_(False),)

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    @torch.no_grad()
    def teacher_logits(self, x: Tensor) -> Tensor:
        """The teacher's logits of images `x` (on their device, eval mode)."""
        teacher = self.teacher
        if next(teacher.parameters()).device != x.device:
            teacher.to(x.device)
        return teacher.eval()(x)

    def forward(self, x: Tensor, student: Tensor, task: Tensor) -> Tensor:
        """The training loss of a batch: `task` (the student's cross-entropy) mixed with the
        distillation loss against the teacher's logits on the same images `x`."""
        if self.weight == 0.0:
            return task
        soft = distillation_loss(student, self.teacher_logits(x), self.temperature)
        return (1.0 - self.weight) * task + self.weight * soft
