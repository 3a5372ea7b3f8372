# SPDX-License-Identifier: Apache-2.0
"""The warm-up cache: one key for everything that changes the warm-up, and nothing else."""

from __future__ import annotations

import json

import pytest

from odimo.io import config_fingerprint
from odimo.pipeline.fit import world_size
from odimo.pipeline.phases import warmup_key, warmup_recipe
from odimo.tasks.train import run
from tests.tasks.helpers import train_cfg


def test_world_size_resolves_devices_like_lightning():
    assert world_size({"devices": 2, "accelerator": "cpu"}) == 2
    assert world_size({"devices": [0, 1, 2]}) == 3
    assert world_size({"devices": "0,1", "num_nodes": 2}) == 4
    assert world_size({"devices": "auto", "accelerator": "cpu"}) == 1
    assert world_size({"devices": "3", "accelerator": "cpu", "num_nodes": 2}) == 6


def test_key_follows_the_trainer_and_the_global_batch(tmp_path):
    one = train_cfg(tmp_path)
    two = train_cfg(tmp_path, "trainer=ddp_cpu", "trainer.devices=2")
    r1, r2 = warmup_recipe(one)["trainer"], warmup_recipe(two)["trainer"]
    assert (r1["world_size"], r2["world_size"]) == (1, 2)
    batch = one.dataset.datamodule.batch_size
    assert (r1["global_batch"], r2["global_batch"]) == (batch, 2 * batch)
    assert warmup_key(one) != warmup_key(two)
    for changed in ("trainer.precision=bf16-mixed", "trainer.deterministic=true", "seed=3"):
        assert warmup_key(train_cfg(tmp_path, changed)) != warmup_key(one), changed
    # logging, loader workers, paths and the later phases do not change the warm-up
    same = train_cfg(
        tmp_path / "elsewhere",
        "trainer.log_every_n_steps=3",
        "dataset.datamodule.num_workers=2",
        "strength=1e-3",
        "finetune.epochs=5",
    )
    assert warmup_key(same) == warmup_key(one)
    assert warmup_key(one).endswith("_" + config_fingerprint(warmup_recipe(one)))


@pytest.mark.parametrize("other", ["trainer.precision=bf16-mixed"])
def test_a_warmup_of_another_trainer_is_not_reused(tmp_path, other):
    """Same warm-up under two trainers: two cache entries; the same trainer again reuses."""
    cache = tmp_path / "cache" / "warmup"
    run(train_cfg(tmp_path, "phases=[warmup]", run="a"))
    (first,) = cache.iterdir()
    stamp = (first / "float.pt").stat().st_mtime_ns
    run(train_cfg(tmp_path, "phases=[warmup]", run="same"))
    assert list(cache.iterdir()) == [first]
    assert (first / "float.pt").stat().st_mtime_ns == stamp  # reused, not retrained
    run(train_cfg(tmp_path, "phases=[warmup]", other, run="b"))
    (second,) = set(cache.iterdir()) - {first}
    assert json.loads((tmp_path / "b" / "warmup.json").read_text())["cache_dir"] == str(second)
    assert (first / "float.pt").stat().st_mtime_ns == stamp  # the first entry is untouched
    done = json.loads((second / "DONE").read_text())
    assert done["key"] == second.name and done["recipe"]["trainer"]["precision"] == "bf16-mixed"
