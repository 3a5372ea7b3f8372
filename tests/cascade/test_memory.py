# SPDX-License-Identifier: Apache-2.0
"""Image keys, the evaluation stream, the cache replay and the cascade behind the memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odimo.cascade.memory import (
    TRANSFORMS,
    Stream,
    cascade_on_stream,
    dhash_keys,
    exact_keys,
    hu_moments,
    image_keys,
    make_stream,
    memory_rates,
    run_memory,
    stream_images,
)
from odimo.cascade.routing import PairOutputs
from odimo.errors import ConfigError


def _images(n: int = 40, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, size, size, generator=g) * 255).round() / 255


def test_transforms_are_the_eight_distinct_dihedral_maps() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    outs = {tuple(TRANSFORMS[t](x).flatten().tolist()) for t in TRANSFORMS}
    assert len(outs) == 8


def test_exact_keys_match_only_identical_bytes() -> None:
    images = _images()
    keys = exact_keys(images)
    assert len(set(keys)) == len(images)
    assert exact_keys(images[:3].clone()) == keys[:3]
    nudged = images[:1].clone()
    nudged[0, 0, 0, 0] += 1 / 255
    assert exact_keys(nudged)[0] != keys[0]


def test_dhash_by_hand() -> None:
    # a left-to-right ramp: every pixel brighter than its left neighbour -> all 64 bits set
    ramp = torch.linspace(0, 1, 18).repeat(16, 1).view(1, 1, 16, 18)
    assert dhash_keys(ramp)[0] == b"\xff" * 8
    assert dhash_keys(ramp.flip(-1))[0] == b"\x00" * 8


@pytest.mark.parametrize("t", range(1, 8))
def test_hu_invariants_survive_every_rotation_and_flip(t: int) -> None:
    images = _images()
    np.testing.assert_allclose(
        hu_moments(TRANSFORMS[t](images)), hu_moments(images), rtol=1e-9, atol=1e-30
    )
    assert image_keys(TRANSFORMS[t](images), "invariants") == image_keys(images, "invariants")
    assert image_keys(TRANSFORMS[t](images), "exact") != image_keys(images, "exact")


def test_stream_sizes_shares_and_seed() -> None:
    stream = make_stream(1000, duplicates=0.3, rotations=0.5, seed=7)
    assert len(stream) == 1300
    counts = np.bincount(stream.source, minlength=1000)
    assert counts.min() == 1 and counts.max() == 2 and (counts == 2).sum() == 300
    assert (stream.transform != 0).sum() == 150
    # transformed items are repeats, never a first showing of an image's identity copy
    again = make_stream(1000, duplicates=0.3, rotations=0.5, seed=7)
    np.testing.assert_array_equal(stream.source, again.source)
    other = make_stream(1000, duplicates=0.3, rotations=0.5, seed=8)
    assert not np.array_equal(stream.source, other.source)
    narrow = make_stream(100, 1.0, 1.0, seed=0, square=False)
    assert set(np.unique(narrow.transform)) <= {0, 2, 4, 5}


@pytest.mark.parametrize("kw", [{"duplicates": 0.0}, {"duplicates": 1.5}, {"rotations": -0.1}])
def test_stream_rejects_bad_shares(kw: dict) -> None:
    args = {"duplicates": 0.3, "rotations": 0.5, **kw}
    with pytest.raises(ConfigError):
        make_stream(10, args["duplicates"], args["rotations"], seed=0)


def test_replay_by_hand_and_lru_capacity() -> None:
    trace = run_memory(["a", "b", "a", "c", "b", "a"])
    np.testing.assert_array_equal(trace.answered_by, [-1, -1, 0, -1, 1, 0])
    # capacity 2: after "c" the least recently used is "b" (a was used at step 2), so b misses
    small = run_memory(["a", "b", "a", "c", "b", "a"], capacity=2)
    np.testing.assert_array_equal(small.answered_by, [-1, -1, 0, -1, -1, -1])


def test_exact_memory_on_a_stream_equals_a_naive_set() -> None:
    images = _images(200, 8)
    stream = make_stream(200, duplicates=0.5, rotations=0.4, seed=1)
    batch = stream_images(images, stream, np.arange(len(stream)))
    trace = run_memory(image_keys(batch, "exact"))
    seen, expect = set(), []
    for x in batch:
        b = x.numpy().tobytes()
        expect.append(b in seen)
        seen.add(b)
    np.testing.assert_array_equal(trace.hits, expect)
    rates = memory_rates(trace, stream)
    plain_repeats = 100 - 40  # 50 % of 200 repeated, 40 % of those turned
    assert rates["hit_rate"] == pytest.approx(plain_repeats / 300)
    assert rates["false_hit_rate"] == 0.0
    assert rates["repeat_recall"] == pytest.approx(plain_repeats / 100)


def test_invariants_memory_hits_turned_repeats() -> None:
    images = _images(200, 8)
    stream = make_stream(200, duplicates=0.5, rotations=0.4, seed=1)
    batch = stream_images(images, stream, np.arange(len(stream)))
    rates = memory_rates(run_memory(image_keys(batch, "invariants")), stream)
    assert rates["repeat_recall"] == pytest.approx(1.0)
    assert rates["hit_rate"] == pytest.approx(100 / 300)


def test_false_hits_reuse_another_images_answer() -> None:
    stream = Stream(source=np.array([0, 1, 0, 2]), transform=np.zeros(4, dtype=np.int64))
    trace = run_memory(["x", "y", "x", "y"])  # image 2 collides with image 1
    rates = memory_rates(trace, stream)
    assert rates["hit_rate"] == 0.5 and rates["false_hit_rate"] == 0.25
    outputs = PairOutputs(
        conf=np.array([0.9, 0.1, 0.9, 0.1]),
        pred_little=np.array([3, 5, 3, 6]),
        pred_sent=np.array([3, 1, 3, 2]),
        labels=np.array([3, 1, 3, 2]),
    )
    # items 0, 1 miss (1 goes to big: right); 2 reuses 0's answer (right); 3 reuses 1's
    # answer (class 1) although it is class 2: the false hit costs accuracy
    result = cascade_on_stream(trace, stream, outputs, threshold=0.5)
    assert result["acc"] == 0.75
    assert result["p_big"] == 0.5  # 1 of the 2 missed items
    assert result["big_calls"] == 0.25


def test_memory_and_no_memory_are_scored_on_the_same_stream() -> None:
    images = _images(60, 8)
    stream = make_stream(60, duplicates=0.5, rotations=0.0, seed=3)
    trace = run_memory(image_keys(stream_images(images, stream, np.arange(len(stream))), "exact"))
    rng = np.random.default_rng(0)
    m = len(stream)
    outputs = PairOutputs(
        conf=rng.uniform(size=m),
        pred_little=rng.integers(0, 3, m),
        pred_sent=rng.integers(0, 3, m),
        labels=rng.integers(0, 3, m),  # per stream item: a plain split could not give these
    )
    result = cascade_on_stream(trace, stream, outputs, threshold=0.4)
    # independent count over the stream's items, without and with the memory
    alone = sum(
        (outputs.pred_sent[i] if outputs.conf[i] < 0.4 else outputs.pred_little[i])
        == outputs.labels[i]
        for i in range(m)
    )
    assert result["acc_no_memory"] == pytest.approx(alone / m)
    assert result["p_big_no_memory"] == pytest.approx((outputs.conf < 0.4).mean())
    answer, right = {}, 0
    for i in range(m):
        src = int(stream.source[i])
        if src not in answer:
            answer[src] = outputs.pred_sent[i] if outputs.conf[i] < 0.4 else outputs.pred_little[i]
        right += answer[src] == outputs.labels[i]
    assert result["acc"] == pytest.approx(right / m)
