# SPDX-License-Identifier: Apache-2.0
"""Sampled architecture spaces (IoTnets): families with named nested laws, drawn by id.

`sample(space, law, id)` returns a network's constructor arguments; the same triple gives the
same network in every process. `build_sampled` builds it through odimo's layer factory, so each
sampled net has float, search and mapped forms (`python train.py model=sampled
model.space=mobilenetv2 model.law=s3 model.id=17`).
"""

from __future__ import annotations

import random
from typing import Any

from odimo.errors import ConfigError
from odimo.spaces.families import SPACES, MobileNetV2Space, ProbeSpace, ResNetSpace, Space
from odimo.spaces.laws import Law, check_id, draw_seed, nested_laws


def get_space(space: str) -> Space:
    """A space by name; ConfigError naming the choices otherwise."""
    if space not in SPACES:
        raise ConfigError(f"unknown space {space!r} (choose from: {', '.join(SPACES)})")
    return SPACES[space]


def get_law(space: str, law: str) -> Law:
    """A law of a space by name; ConfigError naming the choices otherwise."""
    laws = get_space(space).laws
    if law not in laws:
        raise ConfigError(f"unknown law {law!r} of space {space} (choose from: {', '.join(laws)})")
    return laws[law]


def sample(space: str, law: str, net_id: int) -> dict[str, Any]:
    """Constructor arguments of network `net_id` of `space` under `law` (a seeded RNG per id)."""
    chosen = get_law(space, law)
    rng = random.Random(draw_seed(space, law, check_id(net_id)))
    return get_space(space).draw(chosen, rng)


def build_sampled(ops, input_size, num_classes: int, space: str, law: str, id: int):  # noqa: A002
    """The network (space, law, id) in the form of `ops` (the `sampled` model builder)."""
    args = sample(space, law, id)
    model = get_space(space).build(ops, tuple(input_size), num_classes, **args)
    model.arch = {"space": space, "law": law, "id": id, **args}
    return model


__all__ = [
    "SPACES",
    "Law",
    "MobileNetV2Space",
    "ProbeSpace",
    "ResNetSpace",
    "Space",
    "build_sampled",
    "draw_seed",
    "get_law",
    "get_space",
    "nested_laws",
    "sample",
]
