# SPDX-License-Identifier: Apache-2.0
"""Config fingerprints: a hash of everything in a config that changes a result.

One function for every notion of "already done": a job's folder, a cached warm-up and a
characterization record each store the fingerprint of what produced them, and a request with
another fingerprint is computed again (or refused with the keys that differ).
"""

from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

#: Config keys that do not change a job's results (dotted paths), left out of its fingerprint.
NON_RESULT_KEYS = (
    "paths",
    "logger",
    "hydra",
    "sweep_name",
    "force",
    "compile",
    "threads",
    "fused_quant",
    "callbacks.progress",
    "dataset.datamodule.num_workers",
)


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.get(key)
        if not isinstance(tree, dict):
            return
    tree.pop(leaf, None)


def result_config(cfg: DictConfig) -> dict:
    """The resolved config without the keys that do not change results (`NON_RESULT_KEYS`)."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in NON_RESULT_KEYS:
        _drop(tree, key)
    return tree


def config_fingerprint(cfg: DictConfig | dict) -> str:
    """sha256 (16 hex digits) of `result_config(cfg)`: equal configs, equal fingerprints."""
    tree = cfg if isinstance(cfg, dict) else result_config(cfg)
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:16]


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (for one-line messages)."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b, name = old.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, name + ".")
        elif a != b:
            out.append(name)
    return out
