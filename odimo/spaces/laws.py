# SPDX-License-Identifier: Apache-2.0
"""Named, nested sampling laws and the deterministic draw of one network by (space, law, id).

A space lists its parameters, each with its choices ordered from small to large. A law keeps,
for every parameter, the first `n` choices; laws are ordered from the widest (`s0`) to the
narrowest (`s3`), and each keeps at most as many choices as the one before it, so every law is
a subset of the previous one and the ranges shrink toward tiny models.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from odimo.errors import ConfigError


@dataclass(frozen=True)
class Law:
    """A sampling law: the choices of every parameter of a space (a subset of the space's)."""

    name: str
    choices: Mapping[str, tuple[Any, ...]]

    def pick(self, rng: random.Random, param: str) -> Any:
        """One choice of `param`, uniform over the law's choices."""
        return rng.choice(self.choices[param])


def nested_laws(
    params: Mapping[str, tuple[Any, ...]], counts: Mapping[str, Mapping[str, int]]
) -> dict[str, Law]:
    """Laws that keep the first `counts[law][param]` choices of each parameter.

    Raises:
        ValueError: a law keeps more choices than the law before it, or than the space has.
    """
    laws: dict[str, Law] = {}
    previous: Mapping[str, int] | None = None
    for name, keep in counts.items():
        if set(keep) != set(params):
            raise ValueError(f"law {name} must set every parameter {sorted(params)}")
        for param, n in keep.items():
            limit = len(params[param]) if previous is None else previous[param]
            if not 1 <= n <= limit:
                raise ValueError(f"law {name}: {param} keeps {n} choices, allowed 1..{limit}")
        laws[name] = Law(name, {p: tuple(params[p][: keep[p]]) for p in params})
        previous = keep
    return laws


def draw_seed(space: str, law: str, net_id: int) -> int:
    """A 64-bit seed that depends only on (space, law, id): stable across processes and runs."""
    digest = hashlib.sha256(f"{space}/{law}/{net_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def check_id(net_id: Any) -> int:
    """A network id: an integer >= 0."""
    if isinstance(net_id, bool) or not isinstance(net_id, int) or net_id < 0:
        raise ConfigError(f"a network id must be an integer >= 0, got {net_id!r}")
    return net_id
