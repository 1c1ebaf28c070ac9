"""Fewer samples for the same answer: bias-corrected FID, FID∞, intervals, adaptive N.

From one stream of generated features kept as K group statistics
(:class:`~fideval.stats.GroupedStats`, row i → group i mod K; no features stored, no
second pass) and a factored reference (:class:`~fideval.frechet.FrechetReference`):

* :func:`estimate_fid` — plain FD_N, a bias-corrected FD∞ (quadratic in 1/N through the
  delete-a-group jackknife and two-point Richardson points by default), Chong &
  Forsyth's FID∞, and E[FD at target_n],
  each with a 95% interval (t_{K−1}, group-jackknife influence variance, plus the
  extrapolation error for extrapolated values);
* :class:`AdaptiveEstimator` / :func:`adaptive_estimate` — draw until an estimate is
  known to ±tolerance.

See ``docs/estimators.md`` for the methods and their measured bias and coverage.
"""

from __future__ import annotations

from .adaptive import ESTIMATES, AdaptiveEstimator, adaptive_estimate
from .core import CORRECTORS, MIN_GROUPS, estimate_fid, required_samples
from .intervals import t_quantile
from .result import FidEstimate

__all__ = [
    "CORRECTORS",
    "ESTIMATES",
    "MIN_GROUPS",
    "AdaptiveEstimator",
    "FidEstimate",
    "adaptive_estimate",
    "estimate_fid",
    "required_samples",
    "t_quantile",
]
