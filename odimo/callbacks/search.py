# SPDX-License-Identifier: Apache-2.0
"""Callbacks of the search and fine-tune phases."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import lightning.pytorch as L
import torch

from odimo.callbacks.media import log_image, log_table, mapping_rows, media_loggers, plot_mapping
from odimo.errors import CheckpointError
from odimo.hw.platform import Platform
from odimo.io import atomic_torch_save, atomic_write_text
from odimo.nn.conv import search_layers, set_temperature
from odimo.nn.handover import (
    check_rule,
    finish_mapping,
    hard_cost,
    select_epoch,
    update_front,
)
from odimo.nn.mapping import model_mapping
from odimo.nn.network_cost import NetworkCost


class _StepSchedule(L.Callback):
    """A schedule that is a function of the global step after the α warm-up.

    Stateless on purpose: the step and epoch come from the trainer, so a resumed search
    continues exactly without callback state in the checkpoint (callback state is matched by
    class name on resume; these classes keep none, so renaming them breaks no checkpoint).
    """

    def __init__(self, alpha_warmup_epochs: int = 0):
        self.alpha_warmup_epochs = int(alpha_warmup_epochs)
        self.steps_per_epoch = 1
        self.total_steps = 1

    def progress(self, step: int) -> float:
        """Share in [0, 1] of the post-warm-up steps done before `step`."""
        start = self.alpha_warmup_epochs * self.steps_per_epoch
        span = max(self.total_steps - 1 - start, 1)
        return min(max((step - start) / span, 0.0), 1.0)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.steps_per_epoch = max(int(trainer.num_training_batches), 1)
        self.total_steps = max(int(trainer.max_epochs or 1) * self.steps_per_epoch, 1)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.apply(trainer, pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.apply(trainer, pl_module)

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise NotImplementedError


class TemperatureSchedule(_StepSchedule):
    """The softmax temperature T of the search layers.

    With `final` set, T anneals exponentially per step from `initial` to `final`, reached at
    the last step of the phase, whatever its length. With `final=None`, the reference's
    per-epoch rule T = initial·exp(−decay·epoch), set at each epoch start. During the α
    warm-up (`alpha_warmup_epochs`) T stays at `initial`; the annealing starts after it.
    """

    def __init__(
        self,
        initial: float = 1.0,
        final: float | None = None,
        decay: float = 0.045,
        alpha_warmup_epochs: int = 0,
    ):
        super().__init__(alpha_warmup_epochs)
        self.initial = float(initial)
        self.final = None if final is None else float(final)
        self.decay = float(decay)

    def temperature(self, epoch: int, step: int | None = None) -> float:
        """T at a (epoch, global step)."""
        if self.final is None:
            return self.initial * math.exp(-self.decay * max(epoch - self.alpha_warmup_epochs, 0))
        progress = self.progress(step if step is not None else epoch * self.steps_per_epoch)
        return self.initial * (self.final / self.initial) ** progress

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = int(trainer.global_step)
        set_temperature(pl_module.model, self.temperature(trainer.current_epoch, step))


class StrengthRamp(_StepSchedule):
    """The regularizer's scale: over the first `share` of the steps after the α warm-up it
    rises geometrically from 1/100 to 1 (0: off, the scale stays 1)."""

    def __init__(self, share: float, regularizer, alpha_warmup_epochs: int = 0):
        super().__init__(alpha_warmup_epochs)
        self.share = float(share)
        self.regularizer = regularizer

    def strength_scale(self, step: int) -> float:
        """Multiplier of λ at a step: 0.01 → 1 geometrically over the ramp, then 1."""
        if self.share <= 0:
            return 1.0
        return 0.01 ** (1.0 - min(self.progress(step) / self.share, 1.0))

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.regularizer.scale = self.strength_scale(int(trainer.global_step))


class AlphaWarmup(L.Callback):
    """For the first `epochs` epochs α is frozen (its optimizer group is paused) while the
    weights train. Stateless: the epoch comes from the trainer."""

    def __init__(self, epochs: int):
        self.epochs = int(epochs)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        frozen = trainer.current_epoch < self.epochs
        for optimizer in trainer.optimizers:
            if hasattr(optimizer, "paused"):
                if frozen:
                    optimizer.paused.add("alpha")
                else:
                    optimizer.paused.discard("alpha")


def search_schedules(
    temperature: dict, alpha_warmup_epochs: int = 0, strength_ramp: float = 0.0, regularizer=None
) -> list[L.Callback]:
    """The search's schedule callbacks: temperature, then (when on) α warm-up and λ ramp.

    `temperature` holds `initial`, `final` (None: per-epoch `decay`) and `decay`.
    """
    final = temperature.get("final")
    out: list[L.Callback] = [
        TemperatureSchedule(
            float(temperature.get("initial", 1.0)),
            None if final is None else float(final),
            float(temperature.get("decay", 0.045)),
            alpha_warmup_epochs,
        )
    ]
    if alpha_warmup_epochs > 0:
        out.append(AlphaWarmup(alpha_warmup_epochs))
    if strength_ramp > 0 and regularizer is not None:
        out.append(StrengthRamp(strength_ramp, regularizer, alpha_warmup_epochs))
    return out


class FiniteLossGuard(L.Callback):
    """Stop with a clear error when the loss becomes NaN/inf (checked every `every` batches)."""

    def __init__(self, every: int = 20):
        self.every = max(int(every), 1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx % self.every == 0:
            pl_module.check_finite()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pl_module.check_finite()


class CostLogger(L.Callback):
    """After each validation: log soft and hard costs and write the per-layer mapping table.

    Logs `cost/latency_{soft,hard}_cycles`, `cost/latency_hard_ms`, `cost/energy_{soft,hard}_uj`,
    `arch/frac_<unit>` for every unit, `arch/cheap_frac` and the platform's aliases (DIANA:
    `arch/analog_frac`), `arch/temperature`; appends one row per layer to `layers.csv`
    (epoch, layer, channels per unit, soft cheap-unit fraction); keeps the history for the heat-map.
    """

    def __init__(self, network: NetworkCost, out_dir: str | Path, heatmap: bool = True):
        self.network = network
        self.out_dir = Path(out_dir)
        self.heatmap = heatmap
        self.history: list[tuple[int, list[float]]] = []

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        platform: Platform = self.network.platform
        hard = self.network.summary(soft=False)
        soft_cost = self.network(soft=True)
        layers = search_layers(pl_module.model)
        logs = {
            "cost/latency_hard_cycles": hard["latency_cycles"],
            "cost/latency_hard_ms": hard["latency_ms"],
            "cost/energy_hard_uj": hard["energy_uj"],
            "cost/latency_soft_cycles": float(soft_cost.total_latency_cycles),
            "cost/energy_soft_uj": float(
                platform.mw_cycles_to_uj(soft_cost.total_energy_mw_cycles)
            ),
            **{f"arch/{k}": v for k, v in hard.items() if "frac" in k},
        }
        if layers:
            logs["arch/temperature"] = float(layers[0].temperature)
        pl_module.log_dict(logs)
        if not trainer.is_global_zero:
            return
        columns, rows = self._write_layers(trainer.current_epoch, soft_cost.counts, platform)
        log_table(trainer, "arch/layers", columns, rows)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.heatmap and trainer.is_global_zero:
            log_image(trainer, "arch/cheap_heatmap", self.plot_heatmap())

    def _write_layers(
        self, epoch: int, soft_counts: torch.Tensor, platform: Platform
    ) -> tuple[list[str], list[list]]:
        """Append this epoch's rows to `layers.csv`; returns (columns, rows)."""
        hard_counts = self.network.counts(soft=False)
        path = self.out_dir / "layers.csv"
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = ["epoch", "layer", *[f"ch_{u}" for u in platform.unit_names], "cheap_frac_soft"]
        rows, fractions = [], []
        cheap = platform.cheap_unit_index()
        for i, name in enumerate(self.network.names):
            soft = soft_counts[i]
            frac = float(soft[cheap] / soft.sum())
            fractions.append(frac)
            rows.append([epoch, name, *[int(c) for c in hard_counts[i].tolist()], round(frac, 4)])
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(columns)
            writer.writerows(rows)
        self.history.append((epoch, fractions))
        return columns, rows

    def heatmap_history(self) -> list[tuple[int, list[float]]]:
        """(epoch, cheap-unit fraction per layer) of every logged epoch, earlier attempts included.

        Read from `layers.csv`, which a resumed search appends to; an epoch logged twice (a
        resume repeats the interrupted epoch) keeps its last rows. Falls back to this process's
        history when the table is absent.
        """
        path = self.out_dir / "layers.csv"
        if not path.is_file():
            return list(self.history)
        by_epoch: dict[int, dict[str, float]] = {}
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                by_epoch.setdefault(int(row["epoch"]), {})[row["layer"]] = float(
                    row["cheap_frac_soft"]
                )
        names = self.network.names
        return [
            (epoch, [layers[n] for n in names])
            for epoch, layers in sorted(by_epoch.items())
            if all(n in layers for n in names)
        ]

    def plot_heatmap(self, path: str | Path | None = None) -> Path | None:
        """Heat-map of each layer's (soft) cheap-unit fraction over the logged epochs.

        Written to `path` (default: `cheap_heatmap.png` in the phase dir); None if no epoch
        was logged.
        """
        history = self.heatmap_history()
        if not history:
            return None
        from odimo.analysis.plots import plot_unit_heatmap

        path = Path(path) if path is not None else self.out_dir / "cheap_heatmap.png"
        epochs = [e for e, _ in history]
        fractions = [f for _, f in history]
        platform = self.network.platform
        unit = platform.unit_names[platform.cheap_unit_index()]
        return plot_unit_heatmap(epochs, self.network.names, fractions, path, unit=unit)


class MappingHandover(L.Callback):
    """Record the search's epochs, keep the candidates' weights, hand the chosen one over.

    After every validation the epoch's hard accuracy and the hard cost of the regularised
    target are recorded; the epochs that no other epoch beats on both keep their weights in
    `candidates/` (`odimo.nn.handover.update_front`). At the end the policy of
    `odimo.nn.handover` chooses the epoch (`select_epoch` under `rule` and the target), the
    callback restores its weights, the mapping is finished (`finish_mapping`: projection onto
    the target, slack filling) and `handover.json` and `mapping.json` are written.

    Args:
        platform: the platform (mapping format).
        out_path: where `mapping.json` goes.
        network: the search model's cost model.
        regularizer: gives the hard cost of the regularised target (`hard_cost`).
        phase_dir: the search phase folder (candidates and `handover.json`).
        rule: one of `odimo.nn.handover.HANDOVER_RULES`.
        target: cost target in the regularizer's unit, or None.
        fill: slack-filling objective, or None for no filling.
        project: with a target, project the handed-over mapping onto it.
    """

    def __init__(
        self,
        platform: Platform,
        out_path: str | Path,
        network: NetworkCost | None = None,
        regularizer=None,
        phase_dir: str | Path | None = None,
        rule: str = "best_within_final",
        target: float | None = None,
        fill: str | None = None,
        project: bool = False,
    ):
        self.platform = platform
        self.out_path = Path(out_path)
        self.network = network
        self.regularizer = regularizer
        self.dir = Path(phase_dir) / "candidates" if phase_dir is not None else None
        self.rule = check_rule(rule)
        self.target = target
        self.fill = fill
        self.project = project
        self.records: list[dict] = self._load_index()

    def _load_index(self) -> list[dict]:
        index = self.dir / "index.json" if self.dir is not None else None
        if index is None or not index.is_file():
            return []
        return json.loads(index.read_text())["epochs"]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.dir is None or self.network is None:
            return
        acc = trainer.callback_metrics.get(pl_module.monitor)
        if acc is None:
            return
        cost = hard_cost(self.network, self.regularizer)
        record = {"epoch": int(trainer.current_epoch), "acc": float(acc), "cost": cost}
        # every rank keeps the same records (the metric is synchronised); rank 0 writes
        self.records, dropped = update_front(self.records, record)
        if not trainer.is_global_zero:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if record.get("stored"):
            atomic_torch_save(pl_module.state_dict(), self.dir / f"epoch={record['epoch']}.pt")
        for epoch in dropped:
            (self.dir / f"epoch={epoch}.pt").unlink(missing_ok=True)
        index = json.dumps({"epochs": self.records}, indent=1) + "\n"
        atomic_write_text(self.dir / "index.json", index)

    def choose(self) -> tuple[dict | None, dict]:
        """(the chosen record, a report) under `rule` and the target."""
        return select_epoch(self.records, self.rule, self.target)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        chosen, report = self.choose()
        trainer.strategy.barrier()  # rank 0 has written the candidates every rank loads
        if chosen is not None and chosen["epoch"] != report["final_epoch"]:
            path = self.dir / f"epoch={chosen['epoch']}.pt"
            pl_module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        elif chosen is None:
            best = (
                trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            )
            if best:
                load_module_state(pl_module, best)
        if self.network is not None:
            report.update(
                finish_mapping(self.network, self.regularizer, self.target, self.project, self.fill)
            )
        if not trainer.is_global_zero:
            return
        if self.dir is not None:
            atomic_write_text(
                self.dir.parent / "handover.json", json.dumps(report, indent=1) + "\n"
            )
        model_mapping(pl_module.model, self.platform).save(self.out_path)


class MappingMedia(L.Callback):
    """At the end of a phase: the network's per-layer mapping as a table and a bar chart, for
    the trackers that take media (W&B). Does nothing with file loggers only (the run dir gets
    `mapping.json` and `mapping_bars.png` anyway).

    Put it after `MappingHandover`, so that the search logs the mapping it hands over.
    """

    def __init__(self, platform: Platform, png_path: str | Path, plots: bool = True):
        self.platform = platform
        self.png_path = Path(png_path)
        self.plots = plots

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not media_loggers(trainer):
            return
        mapping = model_mapping(pl_module.model, self.platform)
        log_table(trainer, "arch/mapping", *mapping_rows(mapping))
        if self.plots:
            log_image(trainer, "arch/mapping_bars", plot_mapping(mapping, self.png_path))


def load_module_state(pl_module: L.LightningModule, path: str | Path) -> None:
    """Load the weights of a Lightning checkpoint into a module; CheckpointError if impossible.

    The file is read with `weights_only=True` (no pickled code runs); a checkpoint holding
    anything else than tensors and plain containers is refused.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        pl_module.load_state_dict(state)
    except (OSError, KeyError, RuntimeError, EOFError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"{path}: cannot restore ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})"
        ) from None
