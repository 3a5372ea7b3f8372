# SPDX-License-Identifier: Apache-2.0
"""The analog core's read-out: the 6-bit ADC per row tile and its noise (a platform's facts).

DIANA's analog array has 1152 rows; a conv's input channels x kernel positions are its rows, so
a layer with more rows is cut into row tiles of floor(rows / (K_y·K_x)) input channels. Each
tile's integer column sum p is read out separately, q = clamp(floor(p/g + n), qmin, qmax) with a
per-layer power-of-two gain g and noise n in LSB units, and the tiles' read-outs are added
digitally (see docs/chip.md). `adc: null` keeps the exact accumulation of the idealised model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from odimo.errors import ConfigError


@dataclass(frozen=True)
class AdcConfig:
    """A signed ADC of `bits` bits reading the column sum of `rows` array rows."""

    bits: int = 6  # ADC resolution (bits, signed output)
    rows: int = 1152  # array rows summed by one read-out (C_in·K_y·K_x per tile)

    def __post_init__(self) -> None:
        if not (isinstance(self.bits, int) and 2 <= self.bits <= 24):
            raise ConfigError(
                f"platform.analog.adc.bits must be an int in [2, 24], got {self.bits!r}"
            )
        if not (isinstance(self.rows, int) and self.rows >= 1):
            raise ConfigError(f"platform.analog.adc.rows must be an int >= 1, got {self.rows!r}")

    @property
    def qmin(self) -> int:
        """Lowest read-out code (−32 for 6 bits)."""
        return -(2 ** (self.bits - 1))

    @property
    def qmax(self) -> int:
        """Highest read-out code (31 for 6 bits)."""
        return 2 ** (self.bits - 1) - 1

    def tile_channels(self, kernel_area: int, in_channels: int) -> int:
        """Input channels per row tile: floor(rows / (K_y·K_x)), at most C_in."""
        if kernel_area > self.rows:
            raise ConfigError(
                f"a {kernel_area}-position kernel does not fit the analog array's {self.rows} rows"
            )
        return min(self.rows // kernel_area, in_channels)


@dataclass(frozen=True)
class NoiseConfig:
    """Deployment noise of the read-out, before the rounding.

    Additive: n ~ N(0, sigma_lsb²) in LSB of the ADC. Relative (`snr` > 0, DIANA's library):
    n ~ N(0, 1)·|p|/(g·snr), i.e. σ = |p|/snr in partial-sum units; sigma_lsb is then ignored.
    """

    sigma_lsb: float = 1.0  # additive noise std (LSB of the ADC); 0 = noiseless
    snr: float = 0.0  # relative mode: std = |p|/snr (0 = off, additive mode)

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma_lsb, (int, float)) and self.sigma_lsb >= 0):
            raise ConfigError(
                f"platform.analog.noise.sigma_lsb must be >= 0, got {self.sigma_lsb!r}"
            )
        if not (isinstance(self.snr, (int, float)) and self.snr >= 0):
            raise ConfigError(f"platform.analog.noise.snr must be >= 0, got {self.snr!r}")

    def scaled(self, factor: float) -> NoiseConfig:
        """This noise `factor` times stronger (training above the deployment σ)."""
        snr = self.snr / factor if self.snr and factor > 0 else (self.snr if factor > 0 else 0.0)
        return NoiseConfig(float(self.sigma_lsb * factor), float(snr))

    @property
    def silent(self) -> bool:
        """Whether the read-out is noiseless."""
        return self.snr == 0 and self.sigma_lsb == 0


@dataclass(frozen=True)
class AnalogArithmetic:
    """The analog core's arithmetic: its ADC (None = exact accumulation) and noise."""

    adc: AdcConfig | None = field(default_factory=AdcConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)

    @property
    def enabled(self) -> bool:
        """Whether analog channels compute through the read-out."""
        return self.adc is not None

    def to_config(self) -> dict[str, Any]:
        """The `analog:` section of a platform YAML."""
        adc = None if self.adc is None else {"bits": self.adc.bits, "rows": self.adc.rows}
        return {"adc": adc, "noise": {"sigma_lsb": self.noise.sigma_lsb, "snr": self.noise.snr}}


def analog_from_config(cfg: Mapping[str, Any] | None) -> AnalogArithmetic | None:
    """The `analog:` section of a platform config (None when the section is absent)."""
    if cfg is None:
        return None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"platform.analog must be a mapping with adc and noise, got {cfg!r}")
    unknown = sorted(set(cfg) - {"adc", "noise"})
    if unknown:
        raise ConfigError(f"platform.analog: unknown key {unknown[0]!r} (known: adc, noise)")
    adc = cfg.get("adc", {})
    noise = cfg.get("noise") or {}
    try:
        return AnalogArithmetic(
            adc=None if adc is None else AdcConfig(**adc), noise=NoiseConfig(**noise)
        )
    except TypeError as err:
        raise ConfigError(
            f"platform.analog: {err} (adc: bits, rows; noise: sigma_lsb, snr)"
        ) from None
