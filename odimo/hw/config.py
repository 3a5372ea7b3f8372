# SPDX-License-Identifier: Apache-2.0
"""Platforms from configuration: `conf/platform/<name>.yaml` holds a platform's constants.

A platform YAML names its model (`kind`, a class of `odimo.hw.PLATFORMS`), its `name` (used in
mapping files), its `constants` (the fields of the class's constants dataclass, e.g.
`DianaConstants`) and any constructor option of the class as a further top-level key (DIANA:
`cheap_unit`, `smooth_cycles`; Darkside: `latency`, `count`, ...; linear: `units`).
`diana.yaml` holds the method's values; `tasks/calibrate.py` writes calibrated ones.

Results record a platform by `platform_identity` (its full config and a fingerprint of it), and
reloading a result rebuilds the platform from that record, never from today's YAML.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from odimo.errors import ConfigError
from odimo.hw.analog import AnalogArithmetic, analog_from_config
from odimo.hw.darkside import Darkside
from odimo.hw.diana import Diana
from odimo.hw.linear import LinearPlatform
from odimo.hw.platform import Platform

PLATFORMS: dict[str, type[Platform]] = {
    "diana": Diana,
    "darkside": Darkside,
    "linear": LinearPlatform,
}
#: Where `get_platform(name)` looks for `<name>.yaml` (the repository's config group).
PLATFORM_CONF_DIR = Path(__file__).resolve().parent.parent.parent / "conf" / "platform"
#: The user's config root (git-ignored): its `platform/` folder holds the user's own platform
#: YAMLs (calibrated ones), found before the repository's by `get_platform` and, through
#: Hydra's search path (`odimo.cli`), by `platform=<name>`. `ODIMO_CONFIG_DIR` moves it.
USER_CONFIG_DIR = PLATFORM_CONF_DIR.parent / "local"
_NOT_OPTIONS = ("kind", "constants", "fingerprint", "analog")


def user_config_dir() -> Path:
    """The user's config root: `ODIMO_CONFIG_DIR`, else the git-ignored conf/local."""
    env = os.environ.get("ODIMO_CONFIG_DIR")
    return Path(env).expanduser().resolve() if env else USER_CONFIG_DIR


def user_platform_dir() -> Path:
    """Where calibrated platforms are installed: `<user config root>/platform`."""
    return user_config_dir() / "platform"


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
    """Build a platform from its config (`name`, `kind`, `constants`, constructor options, and
    an optional `analog`: the analog read-out, see `odimo.hw.analog`)."""
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
    kwargs = {k: v for k, v in data.items() if k not in _NOT_OPTIONS}
    kwargs.update(overrides)
    try:
        platform = cls(constants=cls.constants_type(**constants), **kwargs)
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"platform {data.get('name')}: {err}") from None
    platform.analog = analog_from_config(data.get("analog"))
    return platform


def platform_to_config(platform: Platform, **extra: Any) -> dict[str, Any]:
    """The config dict of a platform (what `platform_from_config` reads back)."""
    kind = next(k for k, cls in PLATFORMS.items() if type(platform) is cls)
    return {
        "name": platform.name,
        "kind": kind,
        **platform.options(),
        **extra,
        "constants": asdict(platform.constants),
        **({"analog": platform.analog.to_config()} if platform.analog is not None else {}),
    }


def with_analog(platform: Platform, analog: AnalogArithmetic | None) -> Platform:
    """A copy of `platform` with another analog read-out (None: exact accumulation)."""
    out = copy.copy(platform)
    out.analog = analog
    return out


def platform_identity(platform: Platform) -> dict[str, Any]:
    """What a result records of its platform: the full config plus a fingerprint of it."""
    config = json.loads(json.dumps(platform_to_config(platform)))
    text = json.dumps(config, sort_keys=True)
    return {**config, "fingerprint": hashlib.sha256(text.encode()).hexdigest()[:16]}


def platform_of_record(record: Any) -> Platform:
    """The platform a result recorded: a full identity dict (exact constants), or only a name
    (old results: today's YAML of that name)."""
    if isinstance(record, str):
        return get_platform(record)
    data = _plain(record)
    if "kind" not in data and "constants" not in data:
        return get_platform(str(data.get("name")))
    return platform_from_config(data)


def platform_key(record: Any) -> str | None:
    """`name@fingerprint` of a recorded platform identity (the name alone for old records that
    stored only a name; None when nothing was recorded): results with different keys were
    costed by different cost models and must not be compared on one axis."""
    if record is None:
        return None
    if isinstance(record, str):
        return record
    data = _plain(record)
    fingerprint = data.get("fingerprint")
    return f"{data.get('name')}@{fingerprint}" if fingerprint else str(data.get("name"))


def get_platform(name: str | Mapping[str, Any] = "diana", **kwargs: Any) -> Platform:
    """A platform by name (the user's `<name>.yaml`, then conf/platform's, else a registered
    class) or from a config."""
    if not isinstance(name, str):
        return platform_from_config(name, **kwargs)
    for folder in (user_platform_dir(), PLATFORM_CONF_DIR):
        path = folder / f"{name}.yaml"
        if path.is_file():
            return load_platform_yaml(path, **kwargs)
    if name in PLATFORMS and name != "linear":
        return PLATFORMS[name](**kwargs)
    choices = sorted(
        {
            *(k for k in PLATFORMS if k != "linear"),
            *(p.stem for d in (user_platform_dir(), PLATFORM_CONF_DIR) for p in d.glob("*.yaml")),
        }
    )
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
