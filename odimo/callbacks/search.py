# SPDX-License-Identifier: Apache-2.0
"""Callbacks of the search and fine-tune phases."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as L
import torch

from odimo.callbacks.media import log_image, log_table, mapping_rows, media_loggers, plot_mapping
from odimo.errors import CheckpointError
from odimo.hw.platform import Platform
from odimo.nn.conv import search_layers, set_temperature
from odimo.nn.cost import NetworkCost
from odimo.nn.mapping import model_mapping


class TemperatureSchedule(L.Callback):
    """T = initial·exp(-decay·epoch), set at the start of every training epoch.

    Equivalent to multiplying by exp(-decay) once per epoch after validation, but a function of
    the epoch alone: a run resumed from any checkpoint continues with exactly the same T.
    """

    def __init__(self, initial: float = 1.0, decay: float = 0.045):
        self.initial = float(initial)
        self.decay = float(decay)

    def temperature(self, epoch: int) -> float:
        return self.initial * math.exp(-self.decay * epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        set_temperature(pl_module.model, self.temperature(trainer.current_epoch))


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
    `arch/analog_frac`, `arch/temperature`; appends one row per layer to `layers.csv`
    (epoch, layer, channels per unit, soft analog fraction); keeps the history for the heat-map.
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
            "arch/analog_frac": hard["analog_frac"],
        }
        if layers:
            logs["arch/temperature"] = float(layers[0].temperature)
        pl_module.log_dict(logs)
        columns, rows = self._write_layers(trainer.current_epoch, soft_cost.counts, platform)
        log_table(trainer, "arch/layers", columns, rows)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.heatmap:
            log_image(trainer, "arch/analog_heatmap", self.plot_heatmap())

    def _write_layers(
        self, epoch: int, soft_counts: torch.Tensor, platform: Platform
    ) -> tuple[list[str], list[list]]:
        """Append this epoch's rows to `layers.csv`; returns (columns, rows)."""
        hard_counts = self.network.counts(soft=False)
        path = self.out_dir / "layers.csv"
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        columns = ["epoch", "layer", *[f"ch_{u}" for u in platform.unit_names], "analog_frac_soft"]
        rows, fractions = [], []
        for i, name in enumerate(self.network.names):
            soft = soft_counts[i]
            frac = float(soft[-1] / soft.sum())
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
        """(epoch, analog fraction per layer) of every logged epoch, earlier attempts included.

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
                    row["analog_frac_soft"]
                )
        names = self.network.names
        return [
            (epoch, [layers[n] for n in names])
            for epoch, layers in sorted(by_epoch.items())
            if all(n in layers for n in names)
        ]

    def plot_heatmap(self, path: str | Path | None = None) -> Path | None:
        """Heat-map of each layer's (soft) analog fraction over the logged epochs.

        Written to `path` (default: `analog_heatmap.png` in the phase dir); None if no epoch
        was logged.
        """
        history = self.heatmap_history()
        if not history:
            return None
        from odimo.analysis.plots import plot_analog_heatmap

        path = Path(path) if path is not None else self.out_dir / "analog_heatmap.png"
        epochs = [e for e, _ in history]
        return plot_analog_heatmap(epochs, self.network.names, [f for _, f in history], path)


class MappingHandover(L.Callback):
    """At the end of the search: restore the best HARD checkpoint and write its `mapping.json`.

    The fine-tune then starts from exactly the network that validation selected.
    """

    def __init__(self, platform: Platform, out_path: str | Path):
        self.platform = platform
        self.out_path = Path(out_path)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best:
            load_module_state(pl_module, best)
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
