"""Ranks and shares of torch.distributed, with no collectives: the bottom of the flow.

Every stage may ask which rank it is and which rows it reads (:func:`shard_range`);
the collectives that merge statistics are in :mod:`fideval.distributed`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch.distributed as dist

_LOCAL_ONLY = [0]


def is_distributed() -> bool:
    """True when a torch.distributed process group with more than one rank is active
    (and not inside :func:`local_only`)."""
    return (
        not _LOCAL_ONLY[0]
        and dist.is_available()
        and dist.is_initialized()
        and dist.get_world_size() > 1
    )


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Ignore the process group inside the block: no sharding, no collectives.

    For code that only one rank runs (e.g. a trainer that evaluates on its main process
    only), where a collective would wait forever for the other ranks.
    """
    _LOCAL_ONLY[0] += 1
    try:
        yield
    finally:
        _LOCAL_ONLY[0] -= 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def shard_range(n: int, rank_: int | None = None, world: int | None = None) -> tuple[int, int]:
    """The contiguous half-open range [start, stop) of ``n`` items that ``rank_`` owns.

    The first ``n mod world`` ranks get one extra item: every item is owned exactly once.
    """
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    base, extra = divmod(int(n), w)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


def rank_seed(seed: int, *keys: int, rank_: int | None = None) -> int:
    """A per-rank seed, distinct across ranks and keys, reproducible from ``seed``."""
    r = rank() if rank_ is None else rank_
    ss = np.random.SeedSequence(int(seed), spawn_key=(*[int(k) for k in keys], r))
    return int(ss.generate_state(1, dtype=np.uint32)[0])
