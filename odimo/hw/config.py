# SPDX-License-Identifier: Apache-2.0
"""Platforms from configuration: `conf/platform/<name>.yaml` holds a platform's constants.

A platform YAML names its model (`kind`, a class of `odimo.hw.PLATFORMS`), its `name` (used in
mapping files), its cheap unit and its `constants` (the fields of the class's constants
dataclass, e.g. `DianaConstants`). `diana.yaml` holds the method's values; `tasks/calibrate.py`
writes calibrated ones.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from odimo.errors import ConfigError
from odimo.hw.analog import AnalogArithmetic, analog_from_config
from odimo.hw.diana import Diana
from odimo.hw.platform import Platform

PLATFORMS: dict[str, type[Platform]] = {"diana": Diana}
#: Where `get_platform(name)` looks for `<name>.yaml` (the repository's config group).
PLATFORM_CONF_DIR = Path(__file__).resolve().parent.parent.parent / "conf" / "platform"


def _plain(cfg: Any) -> dict[str, Any]:
    """A plain dict from a dict or an OmegaConf node."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return dict(cfg)


def platform_from_config(cfg: Mapping[str, Any], **overrides: Any) -> Platform:
    """Build a platform from its config (`name`, `kind`, `cheap_unit`, `constants`, optional
    `analog`: the analog read-out, see `odimo.hw.analog`)."""
    data = _plain(cfg)
    kind = data.get("kind") or (data.get("name") if data.get("name") in PLATFORMS else None)
    if kind is None:
        raise ConfigError(f"platform config {data.get('name')!r} needs kind: <cost model>")
    kind = str(kind)
    if kind not in PLATFORMS:
        raise ConfigError(f"unknown platform kind {kind!r} (choose from: {', '.join(PLATFORMS)})")
    cls = PLATFORMS[kind]
    constants = data.get("constants") or {}
    known = {f.name for f in fields(cls.constants_type)}
    unknown = sorted(set(constants) - known)
    if unknown:
        raise ConfigError(
            f"platform {data.get('name')}: unknown constant {unknown[0]!r} "
            f"(known: {', '.join(sorted(known))})"
        )
    kwargs = {k: data[k] for k in ("name", "cheap_unit", "smooth_cycles") if k in data}
    kwargs.update(overrides)
    try:
        platform = cls(constants=cls.constants_type(**constants), **kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"platform {data.get('name')}: {err}") from None
    platform.analog = analog_from_config(data.get("analog"))
    return platform


def platform_to_config(platform: Platform, **extra: Any) -> dict[str, Any]:
    """The config dict of a platform (what `platform_from_config` reads back)."""
    kind = next(k for k, cls in PLATFORMS.items() if isinstance(platform, cls))
    return {
        "name": platform.name,
        "kind": kind,
        "cheap_unit": platform.cheap_unit,
        **extra,
        "constants": asdict(platform.constants),
        **({"analog": platform.analog.to_config()} if platform.analog is not None else {}),
    }


def with_analog(platform: Platform, analog: AnalogArithmetic | None) -> Platform:
    """A copy of `platform` with another analog read-out (None: exact accumulation)."""
    out = copy.copy(platform)
    out.analog = analog
    return out


def get_platform(name: str | Mapping[str, Any] = "diana", **kwargs: Any) -> Platform:
    """A platform by name (`conf/platform/<name>.yaml`, else a registered class) or config."""
    if not isinstance(name, str):
        return platform_from_config(name, **kwargs)
    path = PLATFORM_CONF_DIR / f"{name}.yaml"
    if path.is_file():
        return load_platform_yaml(path, **kwargs)
    if name in PLATFORMS:
        return PLATFORMS[name](**kwargs)
    choices = sorted({*PLATFORMS, *(p.stem for p in PLATFORM_CONF_DIR.glob("*.yaml"))})
    raise ConfigError(f"unknown platform {name!r} (choose from: {', '.join(choices)})")


def load_platform_yaml(path: str | Path, **kwargs: Any) -> Platform:
    """A platform from a YAML file; ConfigError if it is missing or not a platform config."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read platform config {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a platform config (a mapping with name and constants)")
    return platform_from_config(data, **kwargs)
