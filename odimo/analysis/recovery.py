# SPDX-License-Identifier: Apache-2.0
"""How much of the read-out's accuracy drop chip-aware training wins back, over seeds.

Two sweeps of the same networks and seeds, one trained with exact analog sums (the reference)
and one chip-aware, each evaluated on the chip (`tasks/chip_eval.py`, rows of `chip_eval.csv`).
Per network and σ, over the seeds both sweeps hold:

    drop     = mean(reference ideal) − mean(reference chip)      what the read-out costs
    gain     = mean(chip-aware chip) − mean(reference chip)      what chip-aware training wins
    recovery = gain / drop

`gain_se` is the standard error of the mean of the per-seed gains (a seed's two networks share
its warm-up, so the gains are paired), and `recovery_se = gain_se / drop`: one seed's network
reads out well or badly by chance, and with a few seeds that chance is often larger than the
gain, which is what the interval says.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from statistics import fmean, stdev
from typing import Any

#: Columns of a recovery row, in the order of the CSV.
COLUMNS = (
    "network",
    "model",
    "dataset",
    "sigma_lsb",
    "noise_snr",
    "seeds",
    "ideal",
    "reference_chip",
    "aware_chip",
    "drop_pt",
    "gain_pt",
    "gain_se_pt",
    "recovery",
    "recovery_se",
)


def _key(record: dict[str, Any]) -> tuple[str, str, str]:
    return (str(record["network"]), str(record.get("model")), str(record.get("dataset")))


def _by_seed(records: list[dict[str, Any]], what: str) -> dict[tuple, dict[Any, dict]]:
    groups: dict[tuple, dict[Any, dict]] = defaultdict(dict)
    for record in records:
        seeds = groups[_key(record)]
        if record["seed"] in seeds:
            raise ValueError(
                f"{what} has two runs of {record['network']} with seed {record['seed']}: "
                "keep one per seed (or give the runs distinct seeds)"
            )
        seeds[record["seed"]] = record
    return groups


def noise_label(sigma: float, snr: float = 0.0, unit: bool = False) -> str:
    """The name of a σ column of a chip table: `σ=<σ>` (additive noise in LSB, with `unit`
    ` LSB` after it; σ = 0 the noiseless ADC), or `snr=<snr>` where the platform's noise is
    relative (σ = |p|/snr, the σ given only switches it on).

    >>> noise_label(0.5), noise_label(0, 25), noise_label(1, 25), noise_label(1, unit=True)
    ('σ=0.5', 'σ=0', 'snr=25', 'σ=1 LSB')
    """
    if sigma and snr > 0:
        return f"snr={snr:g}"
    return f"σ={sigma:g}" + (" LSB" if unit else "")


def sigmas_of(record: dict[str, Any]) -> list[float]:
    """The σ of a chip_eval record's `sigma_<σ>_mean` columns, in their order."""
    found = (re.fullmatch(r"sigma_(.+)_mean", key) for key in record)
    return [float(m.group(1)) for m in found if m]


def recovery_rows(
    aware: list[dict[str, Any]], reference: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per network and σ of the chip-aware records that the reference has seeds of.

    Records are `chip_eval` rows (`network`, `model`, `dataset`, `seed`, `ideal`,
    `sigma_<σ>_mean`, fractions; `noise_snr` > 0 where the noise was relative); accuracies
    in the rows are fractions, drop and gain in percentage points. A network the reference
    lacks (no common seed) has no row.
    """
    ours, theirs = _by_seed(aware, "the chip-aware sweep"), _by_seed(reference, "the reference")
    rows = []
    for key, runs in ours.items():
        seeds = sorted(set(runs) & set(theirs.get(key, {})), key=lambda s: (s is None, s or 0))
        if not seeds:
            continue
        refs = theirs[key]
        ideal = fmean(refs[s]["ideal"] for s in seeds)
        snr = float(runs[seeds[0]].get("noise_snr") or 0.0)
        for sigma in sigmas_of(runs[seeds[0]]):
            column = f"sigma_{sigma:g}_mean"
            ref_chip = fmean(refs[s][column] for s in seeds)
            gains = [runs[s][column] - refs[s][column] for s in seeds]
            drop, gain = ideal - ref_chip, fmean(gains)
            se = stdev(gains) / math.sqrt(len(gains)) if len(gains) > 1 else math.nan
            rows.append(
                {
                    "network": key[0],
                    "model": key[1],
                    "dataset": key[2],
                    "sigma_lsb": sigma,
                    "noise_snr": snr,
                    "seeds": " ".join(str(s) for s in seeds),
                    "ideal": ideal,
                    "reference_chip": ref_chip,
                    "aware_chip": fmean(runs[s][column] for s in seeds),
                    "drop_pt": 100 * drop,
                    "gain_pt": 100 * gain,
                    "gain_se_pt": 100 * se,
                    "recovery": gain / drop if drop > 0 else math.nan,
                    "recovery_se": se / drop if drop > 0 else math.nan,
                }
            )
    return rows


def format_rows(rows: list[dict[str, Any]]) -> list[str]:
    """The recovery table as text lines (percent; ± one standard error over seeds)."""
    width = max([len("network"), *(len(r["network"]) for r in rows)])
    lines = [
        f"{'network':<{width}}  {'noise':>6}  {'seeds':<12}  {'ideal':>6}  {'exact':>6}  "
        f"{'aware':>6}  {'drop pt':>7}  {'gain pt':>13}  {'recovery':>12}"
    ]
    for r in rows:
        recovery = "—" if math.isnan(r["recovery"]) else f"{100 * r['recovery']:.0f} %"
        if not math.isnan(r["recovery_se"]):
            recovery += f" ± {100 * r['recovery_se']:.0f}"
        gain = f"{r['gain_pt']:+.2f}"
        if not math.isnan(r["gain_se_pt"]):
            gain += f" ± {r['gain_se_pt']:.2f}"
        lines.append(
            f"{r['network']:<{width}}  {noise_label(r['sigma_lsb'], r['noise_snr']):>6}  "
            f"{r['seeds']:<12}  "
            f"{100 * r['ideal']:>6.2f}  {100 * r['reference_chip']:>6.2f}  "
            f"{100 * r['aware_chip']:>6.2f}  {r['drop_pt']:>7.2f}  {gain:>13}  {recovery:>12}"
        )
    return lines
