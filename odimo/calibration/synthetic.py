# SPDX-License-Identifier: Apache-2.0
"""Synthetic measurement tables from a platform with known constants (tests and demos).

`python -m odimo.calibration.synthetic out.csv --noise 0.05 --layers 200` writes the cycles and
energy of random layers, each under several channel splits (one `group` per layer), as a platform
with perturbed DIANA constants would measure them, times log-normal noise.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from odimo.hw.diana import DEFAULT_CONSTANTS, Diana, DianaConstants
from odimo.hw.geometry import GeometryTable, LayerGeometry
from odimo.io.tables import write_records_csv

#: The "true" constants of the synthetic chip: DIANA's, perturbed.
TRUE_CONSTANTS = replace(
    DEFAULT_CONSTANTS,
    digital_cycles_per_tile=1.15,
    load_store_divisor=6.0,
    weight_load_cycles_per_row=10.0,
    analog_pass_cycles=21.0,
    power_digital_mw=22.0,
    power_analog_mw=31.0,
    power_both_mw=45.0,
)
#: Channel splits measured per layer: fraction of output channels on the analog unit.
SPLITS = (0.0, 0.25, 0.5, 0.75, 1.0)


def random_layers(n: int, rng: np.random.Generator) -> list[LayerGeometry]:
    """n random conv geometries of the size edge networks use."""
    layers = []
    for i in range(n):
        c_in = int(rng.choice([3, 8, 16, 32, 64, 128, 256]))
        c_out = int(rng.choice([8, 16, 32, 64, 128, 256, 512]))
        k = int(rng.choice([1, 3, 5]))
        o = int(rng.choice([1, 2, 4, 8, 16, 32]))
        layers.append(LayerGeometry(f"layer{i}", c_in, c_out, k, k, 1, 1, o, o))
    return layers


def synthetic_rows(
    constants: DianaConstants = TRUE_CONSTANTS,
    layers: int = 200,
    noise: float = 0.05,
    seed: int = 0,
) -> list[dict]:
    """Measurement rows: every layer under every split, cycles and energy with noise."""
    rng = np.random.default_rng(seed)
    chip = Diana(constants=constants)
    rows = []
    for g in random_layers(layers, rng):
        analog = [round(f * g.c_out) for f in SPLITS]
        counts = torch.tensor([[g.c_out - a, a] for a in analog], dtype=torch.float64)
        table = GeometryTable([g] * len(analog), dtype=torch.float64)
        cycles = chip.unit_cycles(counts, table)
        cycles = cycles * torch.from_numpy(np.exp(rng.normal(0.0, noise, cycles.shape)))
        cycles = cycles * (counts > 0)
        energy = chip.energy_mw_cycles(cycles, soft=False)
        energy = energy * torch.from_numpy(np.exp(rng.normal(0.0, noise, energy.shape)))
        for j in range(len(analog)):
            rows.append(
                {
                    "name": g.name,
                    "group": g.name,
                    **{k: getattr(g, k) for k in ("c_in", "c_out", "k_x", "k_y", "stride")},
                    **{k: getattr(g, k) for k in ("groups", "o_x", "o_y")},
                    "ch_digital": int(counts[j, 0]),
                    "ch_analog": int(counts[j, 1]),
                    "cycles_digital": float(cycles[j, 0]),
                    "cycles_analog": float(cycles[j, 1]),
                    "energy_mw_cycles": float(energy[j]),
                }
            )
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write rows as CSV (header from the first row), atomically."""
    return write_records_csv(path, list(rows[0]), rows, cell=lambda value: value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="CSV file to write")
    parser.add_argument("--layers", type=int, default=200, help="random layers (5 splits each)")
    parser.add_argument("--noise", type=float, default=0.05, help="log-normal sigma of noise")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    rows = synthetic_rows(layers=args.layers, noise=args.noise, seed=args.seed)
    print(f"wrote {len(rows)} rows to {write_rows(args.out, rows)}")


if __name__ == "__main__":
    main()
