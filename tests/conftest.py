# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: a seeded torch, the DIANA platform, the reference networks' geometry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from odimo.hw import Diana, LayerGeometry, get_platform, record_geometry, with_analog
from odimo.models import ModelSpec, build_model
from tests.reference import REFERENCE_SPECS, RefCost


def pytest_configure(config: pytest.Config) -> None:
    """One intra-op thread: unit tests use small tensors, and on a busy machine OpenMP worker
    threads that spin for cores held by other processes make them several times slower."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Every test starts from the same torch RNG state."""
    torch.manual_seed(0)


@pytest.fixture
def diana() -> Diana:
    """DIANA with the idealised analog arithmetic (exact sums: the method's numbers)."""
    return with_analog(get_platform("diana"), None)


@pytest.fixture
def diana_chip() -> Diana:
    """DIANA as `conf/platform/diana.yaml` describes it: the analog core's 6-bit read-out."""
    platform = get_platform("diana")
    assert platform.analog is not None and platform.analog.enabled
    return platform


@pytest.fixture(scope="session")
def reference_specs() -> dict[str, ModelSpec]:
    return dict(REFERENCE_SPECS)


@pytest.fixture(scope="session")
def reference_geometry() -> Callable[[str], list[LayerGeometry]]:
    """Geometry of a reference network (float form, paper input size), computed once."""
    cache: dict[str, list[LayerGeometry]] = {}

    def get(name: str) -> list[LayerGeometry]:
        if name not in cache:
            spec = REFERENCE_SPECS[name]
            torch.manual_seed(0)
            cache[name] = record_geometry(build_model(spec, "float"), spec.input_size)
        return list(cache[name])

    return get


@pytest.fixture(scope="session")
def ref_cost() -> type[RefCost]:
    return RefCost
