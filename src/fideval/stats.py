"""Streaming, mergeable Gaussian statistics in float64, and their grouped form.

State per set of samples: the count n, a fixed shift c (the mean of the first buffered
rows) and the shifted sums S1 = Σ(x − c), S2 = Σ(x − c)(x − c)ᵀ in float64, so that

    μ = c + S1/n,   M2 = S2 − S1 S1ᵀ/n,   cov = M2/(n − 1)   (ddof=1, as ``np.cov``).

Because c lies within a few standard errors of μ, nothing cancels when the feature mean
is large relative to its spread (raw Σxxᵀ in float32 is off by 1.7 FID at mean/std =
100; see docs/numerics.md). Memory is O(d²), independent of N. ``merge`` re-expresses
one accumulator's sums about the other's shift: exact and associative up to float64
round-off.

:class:`GroupedStats` keeps K such accumulators over disjoint groups of one stream
(row i of the stream goes to group i mod K), the basis of the jackknife, bias
correction and FID∞ estimators.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ._arrays import ArrayLike, check_finite_rows, compute_device, native_order
from .errors import FidevalError

__all__ = ["GaussianStats", "GroupedStats", "check_finite_batch"]


def check_finite_batch(batch: torch.Tensor, *, batch_index: int, row_offset: int) -> None:
    """Raise :class:`NonFiniteFeaturesError` naming the batch and rows holding NaN/Inf."""
    check_finite_rows(
        batch,
        f"features batch {batch_index}",
        row_offset=row_offset,
        hint=" — check the extractor input or the data file",
    )


def _to_batch(batch: ArrayLike, device: torch.device | None) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        t = batch.detach()
        if not (t.dtype.is_floating_point or t.dtype in (torch.uint8, torch.int32, torch.int64)):
            raise FidevalError(f"features batch: expected real values, got dtype {t.dtype}")
    else:
        arr = np.asarray(batch)
        if arr.dtype.kind not in "fiu":
            raise FidevalError(f"features batch: expected real values, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(native_order(arr))
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    if device is None:
        device = compute_device(t.device)
    return t.to(device=device, dtype=torch.float64)


class GaussianStats:
    """Streaming mean and covariance of feature vectors, float64, O(d²) memory.

    State: n, a fixed shift c (the mean of the first buffered rows), S1 = Σ(x − c) and
    S2 = Σ(x − c)(x − c)ᵀ, accumulated in float64 with one in-place GEMM per
    ``BUFFER_ROWS`` rows.
    Then μ = c + S1/n and M2 = S2 − S1 S1ᵀ/n; since c is within a few standard errors
    of μ, the subtraction loses nothing, and a large mean relative to the spread costs
    no precision (docs/numerics.md). Two accumulators merge exactly by re-expressing one
    set of sums about the other's shift.

    >>> import numpy as np
    >>> s = GaussianStats()
    >>> x = np.arange(12.0).reshape(6, 2) ** 2
    >>> s.update(x[:4]); s.update(x[4:])
    >>> bool(np.allclose(s.cov, np.cov(x, rowvar=False)))
    True

    Args:
        dim: feature dimension; inferred from the first batch when None.
        device: where the accumulators live; the first batch's device when None
            (CPU for MPS, which has no float64).
    """

    #: Rows gathered before one GEMM: small batches (e.g. 50 images) would otherwise make
    #: every update a memory-bound pass over the d×d accumulator.
    BUFFER_ROWS = 1024

    def __init__(self, dim: int | None = None, device: torch.device | str | None = None) -> None:
        self.dim = dim
        self.device = torch.device(device) if device is not None else None
        self.n = 0
        self.batches = 0
        self._shift: torch.Tensor | None = None
        self._s1: torch.Tensor | None = None
        self._s2: torch.Tensor | None = None
        self._pending: list[torch.Tensor] = []
        self._pending_rows = 0

    # ------------------------------------------------------------------ updates
    # Accumulators are inference tensors when a batch came from inference mode; every
    # in-place update runs in inference mode so that either kind can be updated.
    @torch.inference_mode()
    def _init_state(self, shift: torch.Tensor) -> None:
        d = int(shift.shape[0])
        if self.dim is None:
            self.dim = d
        self.device = shift.device
        self._shift = shift.clone()
        self._s1 = torch.zeros(d, dtype=torch.float64, device=shift.device)
        self._s2 = torch.zeros(d, d, dtype=torch.float64, device=shift.device)

    @torch.inference_mode()
    def update(self, batch: ArrayLike) -> None:
        """Add a batch of features, shape (B, d); numpy or torch, any device."""
        t = _to_batch(batch, self.device)
        if t.ndim != 2:
            raise FidevalError(
                f"features batch {self.batches}: expected a 2-D (B, d) array, "
                f"got shape {tuple(t.shape)}"
            )
        b, d = t.shape
        if self.dim is not None and d != self.dim:
            raise FidevalError(
                f"features batch {self.batches}: d={d} but the statistics have d={self.dim}"
            )
        check_finite_batch(t, batch_index=self.batches, row_offset=self.n)
        self.batches += 1
        if b == 0:
            return
        if self.dim is None:
            self.dim = d
        if self.device is None:
            self.device = t.device
        # Copies, never views: t may share memory with the caller's (reused) array. Until
        # the first flush fixes the shift (the mean of the first buffer), rows stay raw.
        self._pending.append(t.clone() if self._shift is None else t - self._shift)
        self._pending_rows += b
        self.n += b
        if self._pending_rows >= self.BUFFER_ROWS:
            self._flush()

    @torch.inference_mode()
    def _flush(self) -> None:
        """Accumulate the buffered rows: S1 += Σ(x−c), S2 += (X−c)ᵀ(X−c) (one GEMM)."""
        if not self._pending:
            return
        t = self._pending[0] if len(self._pending) == 1 else torch.cat(self._pending)
        self._pending, self._pending_rows = [], 0
        if self._shift is None:
            self._init_state(t.mean(dim=0))
            t = t - self._shift
        assert self._s1 is not None and self._s2 is not None
        self._s1 += t.sum(dim=0)
        self._s2.addmm_(t.mT, t)

    @torch.inference_mode()
    def merge(self, other: GaussianStats) -> GaussianStats:
        """Add another accumulator's samples to this one (in place); returns self."""
        if other.n == 0:
            return self
        self._flush()
        other._flush()
        if self.dim is not None and other.dim != self.dim:
            raise FidevalError(f"cannot merge statistics with d={other.dim} into d={self.dim}")
        assert other._shift is not None and other._s1 is not None and other._s2 is not None
        if self._shift is None:
            self._init_state(other._shift.to(self.device or other.device))
        assert self._shift is not None and self._s1 is not None and self._s2 is not None
        dev = self._shift.device
        s1o, s2o = other._s1.to(dev), other._s2.to(dev)
        delta = other._shift.to(dev) - self._shift
        # Σ(x−c) = S1ₒ + nₒδ ;  Σ(x−c)(x−c)ᵀ = S2ₒ + S1ₒδᵀ + δS1ₒᵀ + nₒδδᵀ
        self._s2 += s2o
        self._s2.addr_(s1o, delta).addr_(delta, s1o).addr_(delta, delta, alpha=other.n)
        self._s1 += s1o + other.n * delta
        self.n += other.n
        self.batches += other.batches
        return self

    def reset(self) -> None:
        """Forget all samples (keeps ``dim``)."""
        self.n = 0
        self.batches = 0
        self._shift = self._s1 = self._s2 = None
        self._pending, self._pending_rows = [], 0

    def copy(self) -> GaussianStats:
        self._flush()
        out = GaussianStats(self.dim, self.device)
        out.n, out.batches = self.n, self.batches
        if self._shift is not None and self._s1 is not None and self._s2 is not None:
            out._shift, out._s1, out._s2 = self._shift.clone(), self._s1.clone(), self._s2.clone()
        return out

    # ------------------------------------------------------------------ results
    def _require(self, minimum: int, what: str) -> None:
        if self.n < minimum:
            raise FidevalError(f"{what} needs at least {minimum} samples, have N={self.n}")

    @property
    def mean_tensor(self) -> torch.Tensor:
        """μ = c + S1/n as a float64 tensor on the accumulator's device."""
        self._require(1, "the mean")
        self._flush()
        assert self._shift is not None and self._s1 is not None
        return self._shift + self._s1 / self.n

    @property
    def m2_tensor(self) -> torch.Tensor:
        """Centred scatter M2 = S2 − S1 S1ᵀ/n (float64 tensor)."""
        self._require(1, "the scatter")
        self._flush()
        assert self._s1 is not None and self._s2 is not None
        m2 = torch.addr(self._s2, self._s1, self._s1, alpha=-1.0 / self.n)
        return 0.5 * (m2 + m2.mT)

    @property
    def cov_tensor(self) -> torch.Tensor:
        """Σ = M2/(n−1) as a float64 tensor on the accumulator's device."""
        self._require(2, "the covariance")
        return self.m2_tensor / (self.n - 1)

    @property
    def mean(self) -> np.ndarray:
        """μ, float64 numpy array (d,)."""
        return self.mean_tensor.cpu().numpy()

    @property
    def cov(self) -> np.ndarray:
        """Σ with ddof=1 (as ``np.cov``), float64 numpy array (d, d)."""
        return self.cov_tensor.cpu().numpy()

    # ------------------------------------------------------------------ state
    @classmethod
    def from_moments(
        cls, n: int, mean: ArrayLike, cov: ArrayLike, device: torch.device | str | None = None
    ) -> GaussianStats:
        """Statistics of n samples with mean ``mean`` and ddof=1 covariance ``cov``."""
        mean_t = _to_batch(mean, None if device is None else torch.device(device)).reshape(-1)
        cov_t = _to_batch(cov, mean_t.device)
        return cls._from_mean_m2(int(n), mean_t, cov_t * max(int(n) - 1, 0))

    @classmethod
    def _from_mean_m2(cls, n: int, mean: torch.Tensor, m2: torch.Tensor) -> GaussianStats:
        out = cls(int(mean.shape[0]), mean.device)
        out._init_state(mean)
        assert out._s2 is not None
        with torch.inference_mode():
            out._s2 += m2
        out.n = n
        return out

    def state_dict(self) -> dict[str, Any]:
        """Plain numpy state (n, batches, dim, mean, m2) for files, checkpoints, all-reduce."""
        empty = self.n == 0
        return {
            "n": self.n,
            "batches": self.batches,
            "dim": self.dim,
            "mean": None if empty else self.mean_tensor.cpu().numpy(),
            "m2": None if empty else self.m2_tensor.cpu().numpy(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> GaussianStats:
        if state["mean"] is None:
            out = cls(None if state["dim"] is None else int(state["dim"]))
        else:
            mean = torch.from_numpy(np.array(state["mean"], dtype=np.float64))
            m2 = torch.from_numpy(np.array(state["m2"], dtype=np.float64))
            out = cls._from_mean_m2(int(state["n"]), mean, m2)
        out.batches = int(state["batches"])
        return out

    def __repr__(self) -> str:
        return f"GaussianStats(n={self.n}, dim={self.dim})"


class GroupedStats:
    """Statistics of K disjoint groups of one stream; row i goes to group i mod K.

    The total is the exact merge of the groups. Rows are buffered per group and
    accumulated by each group's own buffer (``GaussianStats.BUFFER_ROWS``), so K groups
    cost about as much as one.

    Args:
        groups: number of groups K ≥ 1.
        dim: feature dimension (inferred when None).
        offset: global index of this stream's first row (a shard of a larger stream:
            row i goes to group (offset + i) mod K, so shards merge into the groups a
            single process would have built).
    """

    def __init__(
        self,
        groups: int,
        dim: int | None = None,
        device: torch.device | str | None = None,
        offset: int = 0,
    ) -> None:
        if groups < 1:
            raise FidevalError(f"groups must be ≥ 1, got {groups}")
        self.k = int(groups)
        self.groups = [GaussianStats(dim, device) for _ in range(self.k)]
        self.n = 0
        self.batches = 0
        self.dim = dim
        self.offset = int(offset)

    def update(self, batch: ArrayLike) -> None:
        """Add a batch (B, d): its rows continue the round-robin over groups."""
        device = self.groups[0].device
        t = _to_batch(batch, device)
        if t.ndim != 2:
            raise FidevalError(
                f"features batch {self.batches}: expected a 2-D (B, d) array, "
                f"got shape {tuple(t.shape)}"
            )
        if self.dim is not None and t.shape[1] != self.dim:
            raise FidevalError(
                f"features batch {self.batches}: d={t.shape[1]} but the statistics have "
                f"d={self.dim}"
            )
        check_finite_batch(t, batch_index=self.batches, row_offset=self.n)
        self.dim = int(t.shape[1])
        self.batches += 1
        for g in range(self.k):
            # Rows j with (offset + n + j) mod K == g; the group copies them (shifted).
            part = t[(g - self.offset - self.n) % self.k :: self.k]
            if part.shape[0]:
                self.groups[g].update(part)
        self.n += int(t.shape[0])

    def group(self, g: int) -> GaussianStats:
        """Statistics of group g."""
        return self.groups[g]

    def merged(self, indices: Iterable[int] | None = None) -> GaussianStats:
        """Exact merge of the chosen groups (all by default)."""
        out = GaussianStats(self.dim)
        for g in range(self.k) if indices is None else indices:
            out.merge(self.groups[g])
        return out

    def total(self) -> GaussianStats:
        """Statistics of the whole stream."""
        return self.merged()

    def sizes(self) -> list[int]:
        return [s.n for s in self.groups]

    def merge(self, other: GroupedStats) -> GroupedStats:
        """Merge another stream's grouped statistics, group by group (same K)."""
        if other.k != self.k:
            raise FidevalError(f"cannot merge {other.k} groups into {self.k} groups")
        for mine, theirs in zip(self.groups, other.groups, strict=True):
            mine.merge(theirs)
        self.n += other.n
        self.batches += other.batches
        self.dim = self.dim or other.dim
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "n": self.n,
            "offset": self.offset,
            "batches": self.batches,
            "groups": [g.state_dict() for g in self.groups],
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> GroupedStats:
        out = cls(
            int(state["k"]),
            offset=int(state.get("offset", 0)),
        )
        out.groups = [GaussianStats.from_state_dict(s) for s in state["groups"]]
        out.n = int(state["n"])
        out.batches = int(state.get("batches", 0))
        out.dim = out.groups[0].dim
        return out

    def __repr__(self) -> str:
        return f"GroupedStats(k={self.k}, n={self.n}, dim={self.dim})"
