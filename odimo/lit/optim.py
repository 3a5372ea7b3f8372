# SPDX-License-Identifier: Apache-2.0
"""Parameter groups and the optimizer that steps them all once per batch.

The search trains three groups with different optimizers. `MultiOptimizer` owns one optimizer
per group and is itself a `torch.optim.Optimizer`, so Lightning's automatic optimization steps
it once per batch and `trainer.global_step` equals the batch count. Its `param_groups` are the
children's own group dicts, so one `LambdaLR` with a lambda per group schedules each child.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.optim import Optimizer

from odimo.errors import ConfigError
from odimo.quant import Int8WeightPow2, TernaryWeightPerChannel, UintActPact

GROUPS = ("weights", "alpha", "quant")
_QUANTIZERS = (UintActPact, Int8WeightPow2, TernaryWeightPerChannel)


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Split parameters into network weights, architecture logits α, and quantizer parameters."""
    quant_ids = {
        id(p)
        for m in model.modules()
        if isinstance(m, _QUANTIZERS)
        for p in m.parameters(recurse=False)
    }
    groups: dict[str, list[nn.Parameter]] = {g: [] for g in GROUPS}
    for name, param in model.named_parameters():
        if name.endswith(".alpha"):
            groups["alpha"].append(param)
        elif id(param) in quant_ids:
            groups["quant"].append(param)
        else:
            groups["weights"].append(param)
    return {k: v for k, v in groups.items() if v}


class MultiOptimizer(Optimizer):
    """Several optimizers stepped together: the closure runs once, then each child steps."""

    def __init__(self, optimizers: dict[str, Optimizer]):
        if not optimizers:
            raise ValueError("MultiOptimizer needs at least one optimizer")
        self.optimizers = dict(optimizers)
        #: names of the children that `step` skips (e.g. α during the α warm-up)
        self.paused: set[str] = set()
        self.defaults: dict = {}
        self.state: dict = {}
        self._link_groups()
        self._optimizer_step_pre_hooks = {}
        self._optimizer_step_post_hooks = {}
        self._optimizer_state_dict_pre_hooks = {}
        self._optimizer_state_dict_post_hooks = {}
        self._optimizer_load_state_dict_pre_hooks = {}
        self._optimizer_load_state_dict_post_hooks = {}

    def _link_groups(self) -> None:
        self.param_groups = [g for opt in self.optimizers.values() for g in opt.param_groups]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for name, opt in self.optimizers.items():
            if name not in self.paused:
                opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state_dict: dict) -> None:
        if set(state_dict) != set(self.optimizers):
            raise ValueError(
                f"optimizer state has groups {sorted(state_dict)}, "
                f"expected {sorted(self.optimizers)}"
            )
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state_dict[name])
        # load_state_dict replaces the children's group dicts: re-link, or schedulers stop
        # reaching them after a resume.
        self._link_groups()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={type(v).__name__}" for k, v in self.optimizers.items())
        return f"MultiOptimizer({inner})"


class EpochSchedule:
    """LR factor as a function of the epoch: step decay (milestones or every N) or cosine.

    A plain object (not a lambda) so `LambdaLR.state_dict()` stores it and a resume restores it.
    """

    def __init__(
        self,
        milestones: Iterable[int] = (),
        every: int = 0,
        gamma: float = 0.1,
        cosine_epochs: int = 0,
    ):
        self.milestones = sorted(int(m) for m in milestones)
        self.every = int(every)
        self.gamma = float(gamma)
        self.cosine_epochs = int(cosine_epochs)

    def __call__(self, epoch: int) -> float:
        factor = 1.0
        if self.cosine_epochs > 0:
            factor *= 0.5 * (
                1 + math.cos(math.pi * min(epoch, self.cosine_epochs) / self.cosine_epochs)
            )
        steps = sum(1 for m in self.milestones if epoch >= m)
        if self.every > 0:
            steps += epoch // self.every
        return factor * self.gamma**steps


def make_optimizer(
    groups: dict[str, list[nn.Parameter]],
    cfg: dict,
) -> tuple[MultiOptimizer, torch.optim.lr_scheduler.LambdaLR]:
    """One optimizer per parameter group from `cfg[group]` and one LambdaLR over all of them.

    `cfg[group]` keys: `name` (sgd | adam | adamw), `lr`, `momentum`, `weight_decay`, and
    `schedule` (`milestones`, `every`, `gamma`, `cosine_epochs`). A group with no config or
    `lr: 0` is frozen (its parameters are not optimised).
    """
    optimizers: dict[str, Optimizer] = {}
    schedules: list[EpochSchedule] = []
    for group, params in groups.items():
        spec = dict(cfg.get(group) or {})
        if not spec or float(spec.get("lr", 0.0)) == 0.0:
            for p in params:
                p.requires_grad_(False)
            continue
        name = str(spec.get("name", "sgd")).lower()
        lr, wd = float(spec["lr"]), float(spec.get("weight_decay", 0.0))
        if name == "sgd":
            opt = torch.optim.SGD(
                params, lr=lr, momentum=float(spec.get("momentum", 0.0)), weight_decay=wd
            )
        elif name in ("adam", "adamw"):
            cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
            opt = cls(params, lr=lr, weight_decay=wd)
        else:
            raise ConfigError(f"unknown optimizer {name!r} for {group} (sgd, adam, adamw)")
        optimizers[group] = opt
        schedules.extend(
            EpochSchedule(**dict(spec.get("schedule") or {})) for _ in opt.param_groups
        )
    if not optimizers:
        raise ConfigError("no parameter group has a learning rate > 0")
    multi = MultiOptimizer(optimizers)
    return multi, torch.optim.lr_scheduler.LambdaLR(multi, schedules)
