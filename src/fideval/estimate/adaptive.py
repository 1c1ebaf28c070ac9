"""Adaptive sample budget: draw features until the chosen estimate is known to ±tolerance.

The stream is kept as K group statistics (no features). Checks are not run after every
batch (each costs ≈ 1 + K + 5R eigenvalue solves of size d): after a check at n samples
with 95% half-width h, the half-width scales as 1/√n, so the samples needed are about
n·(h/tolerance)²; the next check is there (at least 10% and at most 100% more samples,
rounded up to whole batches). The stream stops when

* the estimate is valid (no invalidity warning) and its half-width ≤ tolerance
  (``stopped_because = "tolerance reached"``), or
* ``max_samples`` are used (``"max_samples reached"``), or
* the sampler is exhausted (``"stream exhausted"``, via :meth:`AdaptiveEstimator.finish`).

Stopping at the first check that meets the tolerance is optional stopping; with checks
spaced by ≥ 10% in n the interval's coverage stays close to nominal (see
``docs/estimators.md`` for the measured coverage).

**The variance behind the half-width** (``variance="influence"``, the default). Every
estimate's standard error is σ_IF·√(Σ_g c_g²/n_g) (:mod:`.intervals`); only σ²_IF, the
per-sample variance of the influence function of FD, is estimated. The group jackknife
estimates it from K = 10 group values: 9 degrees of freedom, so σ̂ is off by ±24% (one
SD) and the stopping point n ∝ σ̂² by about ±50% — and stopping at the first check whose
σ̂ happens to be low is what made runs on the same model stop anywhere from 2 000 to
35 500 samples. Instead the estimator keeps the first ``variance_rows`` feature rows
(float32, CPU; 10 000 by default) and, at each check, takes σ̂²_IF as the sample
variance of their analytic influence values IF(x_i) (:mod:`fideval.metrics.influence`)
under the current plug-in μ̂, Σ̂ of the whole stream (R − 1 degrees of freedom, R rows;
t_{0.975, R−1} replaces t_{0.975, K−1}). Each interval is rescaled accordingly:
half-width = t·SE·σ̂_IF/σ̂_jackknife + its extrapolation error (unchanged). The jackknife
value stays in ``details["sigma2_if_groups"]``. Without rows (statistics fed by
:meth:`AdaptiveEstimator.add_grouped` alone, or fewer than ``MIN_VARIANCE_ROWS``), or
with ``variance="groups"``, the group jackknife is used as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import FidevalError
from ..frechet import ArrayLike, FrechetReference
from ..metrics.influence import FrechetInfluence, GaussianRoots, gaussian_roots
from ..stats import GroupedStats
from .core import estimate_fid as _estimate_fid
from .core import required_samples
from .intervals import t_quantile
from .result import FidEstimate

__all__ = ["ESTIMATES", "VARIANCES", "AdaptiveEstimator", "adaptive_estimate"]

ESTIMATES = ("fid", "fid_bias_corrected", "fid_infinity", "fid_at_target")
VARIANCES = ("influence", "groups")
#: Fewest kept rows for the per-sample variance; below it the group jackknife is used.
MIN_VARIANCE_ROWS = 100


class AdaptiveEstimator:
    """Incremental adaptive FID estimation, driven by the caller batch by batch.

    >>> est = AdaptiveEstimator(reference, tolerance=1.0)      # doctest: +SKIP
    >>> while not est.done:                                     # doctest: +SKIP
    ...     est.update(sample_features(500))
    >>> result = est.estimate()                                 # doctest: +SKIP

    Args:
        reference: the factored reference (``reference.n`` = M or None).
        tolerance: target 95% half-width, in FID units (> 0).
        estimate: which value must reach the tolerance: ``fid``, ``fid_bias_corrected``,
            ``fid_infinity`` or ``fid_at_target`` (default).
        groups: K, groups of the stream (≥ 4).
        min_samples: no check before this many samples (default max(2000, 2K)).
        max_samples: hard budget (default 50 000).
        target_n: target N of ``fid_at_target``.
        batch_size: expected batch size, used to round checkpoints to whole batches.
        progress: show a tqdm bar with estimate ± half-width.
        seed: seed of the estimator's random group orders.
        variance: ``"influence"`` (σ²_IF from per-sample influence values of the first
            ``variance_rows`` rows; module docstring) or ``"groups"`` (the K-group
            jackknife alone).
        variance_rows: rows kept for the per-sample variance.
        **options: passed to :func:`~fideval.estimate.estimate_fid` (orders, corrector…).
    """

    def __init__(
        self,
        reference: FrechetReference,
        tolerance: float,
        *,
        estimate: str = "fid_at_target",
        groups: int = 10,
        min_samples: int | None = None,
        max_samples: int = 50_000,
        target_n: int = 50_000,
        batch_size: int = 500,
        progress: bool = False,
        seed: int = 0,
        variance: str = "influence",
        variance_rows: int = 10_000,
        **options: Any,
    ) -> None:
        if variance not in VARIANCES:
            raise FidevalError(f"variance={variance!r}: expected one of {', '.join(VARIANCES)}")
        if not tolerance > 0:
            raise FidevalError(f"tolerance must be > 0 (FID units), got {tolerance}")
        if estimate not in ESTIMATES:
            raise FidevalError(f"estimate={estimate!r}: expected one of {', '.join(ESTIMATES)}")
        need = required_samples(groups)
        self.min_samples = max(2000, need) if min_samples is None else max(int(min_samples), need)
        if max_samples < self.min_samples:
            raise FidevalError(
                f"max_samples={max_samples} is below the minimum of {self.min_samples} samples "
                f"({groups} groups, min_samples={min_samples})"
            )
        self.reference = reference
        self.tolerance = float(tolerance)
        self.which = estimate
        self.max_samples = int(max_samples)
        self.target_n = int(target_n)
        self.batch_size = max(1, int(batch_size))
        self.seed = seed
        self.options = options
        self.grouped = GroupedStats(groups)
        self.next_check = self.min_samples
        self.done = False
        self.stopped_because: str | None = None
        self.history: list[dict[str, float]] = []
        self.variance = variance
        self.variance_rows = int(variance_rows) if variance == "influence" else 0
        self._rows: list[torch.Tensor] = []
        self._rows_n = 0
        self._reference_roots: GaussianRoots | None = None
        self._last: FidEstimate | None = None
        self._last_n = -1
        self._bar: Any = None
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.max_samples, unit="sample", desc=f"FID ±{tolerance:g}")

    @property
    def n(self) -> int:
        return self.grouped.n

    def update(self, features: ArrayLike) -> bool:
        """Add a (B, d) batch; runs a check when a checkpoint is passed. Returns ``done``."""
        if self.done:
            return True
        room = self.max_samples - self.n
        batch = features[:room] if features.shape[0] > room else features
        self.grouped.update(batch)
        self._keep_rows(batch)
        return self._added(int(batch.shape[0]))

    def add_grouped(self, increment: GroupedStats, features: ArrayLike | None = None) -> bool:
        """Merge the grouped statistics of the stream's next samples (its rows continue the
        stream: built with ``offset=self.n``); checks as :meth:`update`. Returns ``done``.

        This is how a distributed caller feeds the estimator: each rank draws a share,
        one all-reduce merges the groups, and every rank adds the same increment.
        ``features``: the increment's rows (or some of them), for the per-sample variance;
        a distributed caller passes the same rows on every rank, or none.
        """
        if self.done:
            return True
        if increment.k != self.grouped.k:
            raise FidevalError(
                f"increment has {increment.k} groups, the estimator {self.grouped.k}"
            )
        self.grouped.merge(increment)
        if features is not None:
            self._keep_rows(features)
        return self._added(increment.n)

    def _keep_rows(self, features: ArrayLike) -> None:
        """Keep rows (float32, CPU) until ``variance_rows`` are held."""
        room = self.variance_rows - self._rows_n
        if room <= 0:
            return
        rows = features[:room]
        t = rows if isinstance(rows, torch.Tensor) else torch.from_numpy(np.asarray(rows))
        t = t.detach().to("cpu", torch.float32)
        self._rows.append(t)
        self._rows_n += int(t.shape[0])

    def _added(self, count: int) -> bool:
        if self._bar is not None:
            self._bar.update(count)
        if self.n >= self.max_samples:
            self._check()  # may stop with "tolerance reached" first
            if not self.done:
                self._stop("max_samples reached")
        elif self.n >= self.next_check:
            self._check()
        return self.done

    def _estimate(self) -> FidEstimate:
        est = _estimate_fid(
            self.grouped, self.reference, target_n=self.target_n, seed=self.seed, **self.options
        )
        if self._rows_n >= MIN_VARIANCE_ROWS:
            self._influence_variance(est)
        return est

    def _influence_variance(self, est: FidEstimate) -> None:
        """Replace σ̂²_IF of the group jackknife by the sample variance of the kept rows'
        influence values, and rescale every interval (module docstring)."""
        if self._reference_roots is None:
            ref = self.reference
            self._reference_roots = gaussian_roots(ref.mu, ref.sigma, ref.n, name="reference")
        total = self.grouped.total()
        roots = gaussian_roots(total.mean, total.cov, total.n, name="generated sigma")
        rows = torch.cat(self._rows) if len(self._rows) > 1 else self._rows[0]
        self._rows = [rows]
        values = FrechetInfluence(roots, self._reference_roots).generated(rows)
        s2 = float(np.var(values, ddof=1))
        s2_groups = float(est.details.get("sigma2_if", math.nan))
        if not (s2_groups > 0 and math.isfinite(s2)):
            return
        ratio = math.sqrt(s2 / s2_groups)
        tq_old = float(est.details["t_quantile"])
        tq = t_quantile(0.95, rows.shape[0] - 1)
        for name in ESTIMATES:
            se_old = est.se[name]
            value = est.value(name)
            extra = max(est.half_width(name) - tq_old * se_old, 0.0)
            se = se_old * ratio
            half = tq * se + extra
            est.se[name] = se
            setattr(est, f"{name}_ci95", (value - half, value + half))
        est.details["sigma2_if_groups"] = s2_groups
        est.details["sigma2_if"] = s2
        est.details["t_quantile"] = tq
        est.details["variance"] = (
            f"per-sample influence values of the first {rows.shape[0]} samples "
            f"(t_{{0.975,{rows.shape[0] - 1}}}); group jackknife σ̂²_IF kept in sigma2_if_groups"
        )
        est.method += (
            f"; SE rescaled by σ̂_IF from the influence values of {rows.shape[0]} samples "
            f"(t_{{0.975,{rows.shape[0] - 1}}} = {tq:.3f})"
        )

    def _check(self) -> FidEstimate:
        est = self._estimate()
        self._last, self._last_n = est, self.n
        hw = est.half_width(self.which)
        self.history.append({"n": self.n, "value": est.value(self.which), "half_width": hw})
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.which}={est.value(self.which):.3f}±{hw:.3f}")
        if est.valid and hw <= self.tolerance:
            self._stop("tolerance reached")
            return est
        self.next_check = self._next_check(hw if est.valid else math.inf)
        return est

    def _next_check(self, half_width: float) -> int:
        """Where to look next: the N at which the half-width should reach the tolerance
        (hw ∝ 1/√N), +2%, kept within [1.1 N, 2 N] (1.5 N when hw is unknown), rounded up
        to whole batches and capped at ``max_samples``."""
        n = self.n
        if math.isfinite(half_width):
            wanted = n * (half_width / self.tolerance) ** 2
            nxt = min(max(wanted * 1.02, 1.1 * n), 2.0 * n)
        else:
            nxt = 1.5 * n
        nxt = math.ceil(nxt / self.batch_size) * self.batch_size
        return int(min(max(nxt, n + 1), self.max_samples))

    def _stop(self, reason: str) -> None:
        self.done = True
        self.stopped_because = reason
        if self._bar is not None:
            self._bar.close()

    def resume(self, tolerance: float) -> None:
        """Continue the same stream towards a new (smaller) tolerance."""
        self.tolerance = float(tolerance)
        if self.stopped_because == "tolerance reached" and self.n < self.max_samples:
            self.done = False
            self.stopped_because = None
            hw = self.history[-1]["half_width"] if self.history else math.inf
            self.next_check = self._next_check(hw)

    def finish(self, reason: str = "stream exhausted") -> FidEstimate:
        """Stop now (e.g. the sampler ran out); returns the final estimate."""
        if not self.done:
            self._stop(reason)
        return self.estimate()

    def estimate(self) -> FidEstimate:
        """The estimate at the current N (recomputed if samples arrived since the last)."""
        if self._last is None or self._last_n != self.n:
            if self.n < required_samples(self.grouped.k):
                raise FidevalError(
                    f"the stream is too short for {self.grouped.k} groups: {self.n} sample(s), "
                    f"need at least {required_samples(self.grouped.k)}"
                )
            est = self._estimate()
            self._last, self._last_n = est, self.n
        self._last.n_used = self.n
        self._last.stopped_because = self.stopped_because or "running"
        return self._last


def adaptive_estimate(
    sample_features: Callable[[int], ArrayLike],
    reference: FrechetReference,
    *,
    tolerance: float,
    estimate: str = "fid_at_target",
    batch_size: int = 500,
    groups: int = 10,
    min_samples: int | None = None,
    max_samples: int = 50_000,
    target_n: int = 50_000,
    progress: bool = True,
    seed: int = 0,
    variance: str = "influence",
    variance_rows: int = 10_000,
    **options: Any,
) -> FidEstimate:
    """Draw ``sample_features(batch_size)`` batches until ``estimate`` is known to ±tolerance.

    ``sample_features(b)`` returns a (b, d) feature batch (numpy or torch); a shorter
    or empty batch means the sampler is exhausted. Returns the final
    :class:`FidEstimate` with ``n_used`` and ``stopped_because`` filled.
    """
    est = AdaptiveEstimator(
        reference,
        tolerance,
        estimate=estimate,
        groups=groups,
        min_samples=min_samples,
        max_samples=max_samples,
        target_n=target_n,
        batch_size=batch_size,
        progress=progress,
        seed=seed,
        variance=variance,
        variance_rows=variance_rows,
        **options,
    )
    while not est.done:
        want = min(batch_size, est.max_samples - est.n)
        batch = sample_features(want)
        rows = int(batch.shape[0]) if isinstance(batch, np.ndarray | torch.Tensor) else len(batch)
        if rows:
            est.update(batch)
        if rows < want and not est.done:
            return est.finish("stream exhausted")
    return est.estimate()
