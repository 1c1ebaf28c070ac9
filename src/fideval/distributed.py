"""torch.distributed: disjoint shards, one all-reduce, the same result on every rank.

fideval rides the process group the user, ``torchrun`` or ``accelerate`` set up (NCCL on
GPUs, gloo on CPUs). Each rank takes a contiguous, disjoint share of the N samples
(:func:`shard_range`: sizes differ by at most one, no padding duplicates, totals exact),
accumulates float64 statistics locally, and :func:`all_reduce_stats` merges them with a
single all-reduce of d² + d + 1 float64 values (33.6 MB at d = 2048) — not an
all-gather of world × d².

The merge is exact: every rank re-expresses its (n, μ, M2) as shifted sums about one
common shift c (the mean of the lowest rank with samples, broadcast first: d values),

    S0 = n,  S1 = n(μ − c),  S2 = M2 + n(μ − c)(μ − c)ᵀ,

the sums are all-reduced, and μ = c + S1/S0, M2 = S2 − S1 S1ᵀ/S0 on every rank.

Failures are loud: :func:`collective_guard` runs each rank's local work and then agrees
on success with a small all-reduce; a rank that raised makes every rank raise a
:class:`~fideval.errors.FidevalError` naming it. A rank that dies outright (killed, OOM)
is caught by the process group's timeout (``init_process_group(timeout=…)``; fideval's
CLI uses ``FIDEVAL_DIST_TIMEOUT`` seconds, default 300) and, under ``torchrun``, by its
agent, which stops the other workers once one exits with an error.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

# Re-exported: fideval.distributed is the public name of the rank helpers too.
from ._ranks import (  # noqa: F401
    _LOCAL_ONLY,
    is_distributed,
    is_main_process,
    local_only,
    rank,
    rank_seed,
    shard_range,
    world_size,
)
from .errors import FidevalError
from .stats import GaussianStats, GroupedStats

DEFAULT_TIMEOUT_S = 300


def _collective_device(device: torch.device | None) -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu") if device is None else device


def _pack(stats: GaussianStats, shift: torch.Tensor, d: int) -> torch.Tensor:
    out = torch.zeros(1 + d + d * d, dtype=torch.float64, device=shift.device)
    if stats.n == 0:
        return out
    mean = stats.mean_tensor.to(shift.device)
    m2 = stats.m2_tensor.to(shift.device)
    delta = mean - shift
    out[0] = stats.n
    out[1 : 1 + d] = stats.n * delta
    out[1 + d :] = (m2 + stats.n * torch.outer(delta, delta)).reshape(-1)
    return out


def _unpack(flat: torch.Tensor, shift: torch.Tensor, d: int) -> GaussianStats:
    n = round(float(flat[0]))
    if n == 0:
        return GaussianStats(d)
    s1 = flat[1 : 1 + d]
    s2 = flat[1 + d :].reshape(d, d)
    mean = shift + s1 / n
    m2 = torch.addr(s2, s1, s1, alpha=-1.0 / n)
    return GaussianStats._from_mean_m2(n, mean, 0.5 * (m2 + m2.mT))


def _common_shift(stats_list: list[GaussianStats], d: int, device: torch.device) -> torch.Tensor:
    """The mean of the lowest rank that has samples (broadcast: d float64 values).

    Any rank's mean is within a few standard deviations of the pooled mean, so the
    shifted sums lose nothing to cancellation (a zero shift would, once the mean is
    large relative to the spread).
    """
    local = next((s for s in stats_list if s.n), None)
    src = torch.tensor([float(rank() if local is not None else world_size())], device=device)
    dist.all_reduce(src, op=dist.ReduceOp.MIN)
    source = int(src.item())
    shift = torch.zeros(d, dtype=torch.float64, device=device)
    if local is not None and rank() == source:
        shift = local.mean_tensor.to(device).clone()
    if source < world_size():
        dist.broadcast(shift, src=source)
    return shift


def _agree_dim(local: int | None) -> int:
    t = torch.tensor([local if local is not None else -1], dtype=torch.float64)
    t = t.to(_collective_device(None))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    d = int(t.item())
    if d < 0:
        raise FidevalError("distributed statistics: no rank has any samples")
    if local is not None and local != d:
        raise FidevalError(f"distributed statistics: rank {rank()} has d={local}, another d={d}")
    return d


def all_reduce_stats(stats: GaussianStats) -> GaussianStats:
    """Merge every rank's statistics; each rank gets the same merged statistics.

    Without an active multi-rank process group, returns ``stats`` unchanged.
    """
    if not is_distributed():
        return stats
    return _all_reduce_many([stats])[0]


def all_reduce_grouped(grouped: GroupedStats) -> GroupedStats:
    """Merge every rank's grouped statistics group by group (one all-reduce of K blocks)."""
    if not is_distributed():
        return grouped
    parts = [grouped.group(g) for g in range(grouped.k)]
    merged = _all_reduce_many(parts)
    out = GroupedStats(grouped.k, dim=merged[0].dim)
    out.groups = merged
    out.n = sum(s.n for s in merged)
    return out


def _all_reduce_many(parts: list[GaussianStats]) -> list[GaussianStats]:
    d = _agree_dim(next((p.dim for p in parts if p.dim is not None), None))
    device = _collective_device(None)
    shift = _common_shift(parts, d, device)
    flat = torch.cat([_pack(p, shift, d) for p in parts])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    size = 1 + d + d * d
    return [_unpack(flat[i * size : (i + 1) * size], shift, d) for i in range(len(parts))]


@contextlib.contextmanager
def collective_guard(what: str) -> Iterator[None]:
    """Run local work; then all ranks agree it succeeded, or all raise naming the failed rank.

    Without an active process group this is a no-op wrapper.
    """
    if not is_distributed():
        yield
        return
    error: BaseException | None = None
    try:
        yield
    except BaseException as exc:  # re-raised below, after the others are told
        error = exc
    flags = torch.zeros(world_size(), dtype=torch.float64, device=_collective_device(None))
    if error is not None:
        flags[rank()] = 1.0
    dist.all_reduce(flags, op=dist.ReduceOp.SUM)
    if error is not None:
        raise error
    failed = [i for i, f in enumerate(flags.tolist()) if f]
    if failed:
        raise FidevalError(
            f"{what}: rank(s) {', '.join(map(str, failed))} failed (see their error); "
            f"rank {rank()} stops too"
        )


def broadcast_object(obj: object) -> object:
    """Rank 0's ``obj`` on every rank (identity without a process group)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def init_from_env(device: str | None = None) -> bool:
    """Initialize the process group from torchrun's environment when present.

    Uses NCCL when the device is CUDA, else gloo, with ``FIDEVAL_DIST_TIMEOUT`` seconds
    (default 300) as the collective timeout. Returns True when distributed.
    """
    if dist.is_initialized():
        return is_distributed()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return False
    use_cuda = (device or "").startswith("cuda") or (device is None and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = datetime.timedelta(
        seconds=float(os.environ.get("FIDEVAL_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    )
    dist.init_process_group(backend=backend, timeout=timeout)
    _OWN_GROUP[0] = True
    return is_distributed()


_OWN_GROUP = [False]


def shutdown(*, wait: bool = True) -> bool:
    """Destroy the process group :func:`init_from_env` created (and only that one).

    Left to interpreter exit, or torn down while another rank still talks to it, gloo's
    worker threads can be destroyed while joinable, which aborts the process
    ("terminate called without an active exception"). ``wait``: first a barrier, so
    every rank has finished (skipped on error paths, where a rank may be gone).
    Returns True when it destroyed a group.
    """
    owned = _OWN_GROUP[0] and dist.is_initialized()
    if owned:
        if wait and is_distributed():
            dist.barrier()
        dist.destroy_process_group()
    _OWN_GROUP[0] = False
    return bool(owned)
