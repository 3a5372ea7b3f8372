# SPDX-License-Identifier: Apache-2.0
"""A memory in front of the cascade: an input whose hash was seen before reuses the answer
given then, and neither network runs.

Three keys: `exact` (a digest of the raw bytes), `dhash` (64-bit perceptual difference hash of an
8×9 grey thumbnail), `invariants` (Hu's seven moment invariants, rounded in log scale: unchanged
by the eight rotations/flips of a square image). The evaluation stream is a split plus
duplicates of a share of it, a share of which are rotated or flipped, in a seeded random order.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from odimo.cascade.routing import PairOutputs
from odimo.errors import ConfigError

MEMORIES = ("none", "exact", "dhash", "invariants")
#: Dihedral transforms by id; 0 is the identity. 1-3 rotate by 90/180/270°, 4-5 flip, 6-7
#: transpose. On non-square images only 2, 4 and 5 keep the shape.
TRANSFORMS: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    0: lambda x: x,
    1: lambda x: torch.rot90(x, 1, (-2, -1)),
    2: lambda x: torch.rot90(x, 2, (-2, -1)),
    3: lambda x: torch.rot90(x, 3, (-2, -1)),
    4: lambda x: torch.flip(x, (-1,)),
    5: lambda x: torch.flip(x, (-2,)),
    6: lambda x: x.transpose(-2, -1),
    7: lambda x: torch.rot90(x.transpose(-2, -1), 2, (-2, -1)),
}
SHAPE_KEEPING = (2, 4, 5)


def _gray(images: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, H, W] float64 channel mean."""
    return images.to(torch.float64).mean(dim=1)


def exact_keys(images: torch.Tensor) -> list[Hashable]:
    """A 128-bit digest of each image's raw bytes (any change of any pixel misses)."""
    data = images.detach().cpu().contiguous().numpy()
    return [hashlib.blake2b(x.tobytes(), digest_size=16).digest() for x in data]


def dhash_keys(images: torch.Tensor, size: int = 8) -> list[Hashable]:
    """Difference hash: area-resize to size×(size+1) grey, one bit per left<right neighbour."""
    thumb = F.adaptive_avg_pool2d(_gray(images).unsqueeze(1), (size, size + 1)).squeeze(1)
    bits = (thumb[:, :, 1:] > thumb[:, :, :-1]).reshape(len(images), -1).numpy()
    return [np.packbits(row).tobytes() for row in bits]


def hu_moments(images: torch.Tensor) -> np.ndarray:
    """Hu's seven invariants of each grey image, [N, 7] float64 (the 7th up to its sign)."""
    g = _gray(images)
    _, h, w = g.shape
    y = torch.arange(h, dtype=torch.float64).view(1, h, 1)
    x = torch.arange(w, dtype=torch.float64).view(1, 1, w)
    m00 = g.sum(dim=(1, 2)).clamp_min(1e-12)
    xc = (g * x).sum(dim=(1, 2)) / m00
    yc = (g * y).sum(dim=(1, 2)) / m00
    dx, dy = x - xc.view(-1, 1, 1), y - yc.view(-1, 1, 1)

    def eta(p: int, q: int) -> torch.Tensor:
        return (g * dx**p * dy**q).sum(dim=(1, 2)) / m00 ** (1 + (p + q) / 2)

    n20, n02, n11 = eta(2, 0), eta(0, 2), eta(1, 1)
    n30, n03, n21, n12 = eta(3, 0), eta(0, 3), eta(2, 1), eta(1, 2)
    a, b = n30 + n12, n21 + n03
    hu = [
        n20 + n02,
        (n20 - n02) ** 2 + 4 * n11**2,
        (n30 - 3 * n12) ** 2 + (3 * n21 - n03) ** 2,
        a**2 + b**2,
        (n30 - 3 * n12) * a * (a**2 - 3 * b**2) + (3 * n21 - n03) * b * (3 * a**2 - b**2),
        (n20 - n02) * (a**2 - b**2) + 4 * n11 * a * b,
        ((3 * n21 - n03) * a * (a**2 - 3 * b**2) - (n30 - 3 * n12) * b * (3 * a**2 - b**2)).abs(),
    ]
    return torch.stack(hu, dim=1).numpy()


def invariant_keys(images: torch.Tensor, digits: int = 2, floor: float = 1e-12) -> list[Hashable]:
    """Hu invariants as sign·log10|h| rounded to `digits` decimals; |h| < floor counts as 0."""
    hu = hu_moments(images)
    small = np.abs(hu) < floor
    logs = np.where(small, 0.0, np.sign(hu) * np.log10(np.where(small, 1.0, np.abs(hu))))
    codes = np.round(logs * 10**digits).astype(np.int64)
    codes[small] = np.iinfo(np.int64).min  # "zero" is its own code
    return [row.tobytes() for row in codes]


def image_keys(images: torch.Tensor, memory: str, digits: int = 2) -> list[Hashable]:
    """The cache keys of a batch of images [N, C, H, W] under a memory kind."""
    if memory == "exact":
        return exact_keys(images)
    if memory == "dhash":
        return dhash_keys(images)
    if memory == "invariants":
        return invariant_keys(images, digits)
    raise ConfigError(f"unknown memory {memory!r} (choose from: {', '.join(MEMORIES)})")


@dataclass(frozen=True)
class Stream:
    """An evaluation stream over a split: item i shows image `source[i]` under `transform[i]`."""

    source: np.ndarray
    transform: np.ndarray

    def __len__(self) -> int:
        return len(self.source)


def make_stream(
    n: int, duplicates: float, rotations: float, seed: int, square: bool = True
) -> Stream:
    """The split's n images once each, plus round(duplicates·n) repeats of distinct random
    images, round(rotations·repeats) of them rotated/flipped; all in a seeded random order."""
    if not 0.0 < duplicates <= 1.0:
        raise ConfigError(f"duplicates must lie in (0, 1], got {duplicates!r}")
    if not 0.0 <= rotations <= 1.0:
        raise ConfigError(f"rotations must lie in [0, 1], got {rotations!r}")
    rng = np.random.default_rng(seed)
    repeats = int(round(duplicates * n))
    dup_source = rng.choice(n, size=repeats, replace=False)
    dup_transform = np.zeros(repeats, dtype=np.int64)
    turned = rng.choice(repeats, size=int(round(rotations * repeats)), replace=False)
    choices = np.arange(1, 8) if square else np.array(SHAPE_KEEPING)
    dup_transform[turned] = rng.choice(choices, size=len(turned))
    source = np.concatenate([np.arange(n), dup_source])
    transform = np.concatenate([np.zeros(n, dtype=np.int64), dup_transform])
    order = rng.permutation(len(source))
    return Stream(source[order], transform[order])


def stream_images(images: torch.Tensor, stream: Stream, index: np.ndarray) -> torch.Tensor:
    """The images of stream items `index`, each with its transform applied."""
    out = images[torch.as_tensor(stream.source[index])].clone()
    for t in np.unique(stream.transform[index]):
        rows = torch.as_tensor(np.flatnonzero(stream.transform[index] == t))
        out[rows] = TRANSFORMS[int(t)](out[rows])
    return out


@dataclass(frozen=True)
class MemoryTrace:
    """What the memory did on a stream: `answered_by[i]` is the earlier stream item whose answer
    item i reuses, or -1 when i missed (then the cascade ran and its answer was stored)."""

    answered_by: np.ndarray

    @property
    def hits(self) -> np.ndarray:
        return self.answered_by >= 0


def run_memory(keys: list[Hashable], capacity: int | None = None) -> MemoryTrace:
    """Replay a stream of keys through a cache (least recently used first out when full)."""
    cache: OrderedDict[Hashable, int] = OrderedDict()
    answered_by = np.full(len(keys), -1, dtype=np.int64)
    for i, key in enumerate(keys):
        if key in cache:
            answered_by[i] = cache[key]
            cache.move_to_end(key)
            continue
        cache[key] = i
        if capacity is not None and len(cache) > capacity:
            cache.popitem(last=False)
    return MemoryTrace(answered_by)


def memory_rates(trace: MemoryTrace, stream: Stream) -> dict[str, float]:
    """Hit rate, false-hit rate (hits that reuse ANOTHER image's answer), both per stream item,
    and the share of repeated items that hit their own image."""
    hits = trace.hits
    src = stream.source
    false_hit = hits & (src[np.maximum(trace.answered_by, 0)] != src)
    first = np.zeros(len(stream), dtype=bool)
    first[np.unique(src, return_index=True)[1]] = True
    repeats = ~first
    return {
        "hit_rate": float(hits.mean()),
        "false_hit_rate": float(false_hit.mean()),
        "repeat_recall": float((hits & ~false_hit & repeats).sum() / max(repeats.sum(), 1)),
        "items": int(len(stream)),
        "repeats": int(repeats.sum()),
    }


def cascade_on_stream(
    trace: MemoryTrace, stream: Stream, outputs: PairOutputs, threshold: float
) -> dict[str, float]:
    """Accuracy and big-call share of a cascade behind a memory, on a stream.

    `outputs` holds the pair's per-item outputs on the stream (for transformed items, the
    networks' outputs on the transformed image). A missed item gets the cascade's answer, which
    is stored; a hit reuses the stored answer of the item it matched, right or wrong.

    Returns:
        `acc`, `p_big` (share of MISSED items sent to big, the p_big of the cost formula),
        `big_calls` (share of all items), `acc_no_memory` and `p_big_no_memory` (the cascade
        alone on the SAME stream, so the two accuracies differ by the memory only), and the
        memory's rates (see `memory_rates`).
    """
    pred, to_big = outputs.predictions(threshold)
    hits = trace.hits
    final = np.where(hits, pred[np.maximum(trace.answered_by, 0)], pred)
    misses = ~hits
    return {
        "acc": float((final == outputs.labels).mean()),
        "acc_no_memory": float((pred == outputs.labels).mean()),
        "p_big_no_memory": float(to_big.mean()),
        "p_big": float((to_big & misses).sum() / max(misses.sum(), 1)),
        "big_calls": float((to_big & misses).mean()),
        **memory_rates(trace, stream),
    }
