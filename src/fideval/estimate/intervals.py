"""Student-t quantiles and first-order (linearised) variance of FD combinations.

Every estimator in :mod:`fideval.estimate` is a fixed linear combination of Fréchet
distances of unions of the K groups of one stream,

.. math::  \\hat\\theta = \\sum_j w_j\\,\\mathrm{FD}(S_j),

so one variance formula serves them all. To first order (delta method),
FD(S) ≈ θ + Σ_{g∈S} n_g ℓ_g / n_S, where ℓ_g is the mean over group g of the
influence function IF_g(x) (docs/estimators.md). Hence

.. math::  \\hat\\theta - E\\hat\\theta \\approx \\sum_g c_g \\ell_g,\\qquad
           c_g = \\sum_j w_j [g\\in S_j]\\, n_g / n_{S_j},

and Var θ̂ ≈ σ²_IF Σ_g c_g²/n_g, σ²_IF = Var IF(x) (squared FD units per sample).
The group values ℓ_g are not formed from the analytic influence function (that needs
the optimal-transport map, a d×d eigendecomposition, and fails for N ≤ d); they come
from the delete-a-group jackknife: FD(all but g) − FD(all) ≈ n_g (L̄ − ℓ_g)/(N − n_g),
so e_g = −(N − n_g)/n_g · (FD_{−g} − FD_N) and σ̂²_IF = Σ_g n_g (e_g − ē)²/(K − 1).
For the plain FD (c_g = n_g/N) this is exactly Tukey's group-jackknife variance.
Intervals use t_{0.975, K−1}: the variance estimate has K − 1 degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .._tdist import student_t_ppf

__all__ = ["influence_variance", "linear_se", "t_quantile"]


def t_quantile(level: float, df: int) -> float:
    """Two-sided Student-t quantile t_{(1+level)/2, df} (reuses fideval.metrics.replicate)."""
    return float(student_t_ppf(0.5 + level / 2.0, df))


def influence_variance(
    full: float, leave_one_out: Sequence[float], sizes: Sequence[int]
) -> tuple[float, np.ndarray]:
    """σ̂²_IF from the delete-a-group jackknife, and the group values e_g.

    Args:
        full: FD of all N samples.
        leave_one_out: FD with group g deleted, for g = 0..K−1.
        sizes: n_g, the group sizes.

    Returns:
        (σ̂²_IF in squared FD units per sample, e_g array of length K).
    """
    n = np.asarray(sizes, dtype=np.float64)
    total = float(n.sum())
    loo = np.asarray(leave_one_out, dtype=np.float64)
    e = -(total - n) / n * (loo - full)
    e_bar = float((n * e).sum() / total)
    k = len(n)
    var = float((n * (e - e_bar) ** 2).sum() / (k - 1)) if k > 1 else math.nan
    return var, e


def linear_se(sigma2_if: float, coefficients: np.ndarray, sizes: Sequence[int]) -> float:
    """√(σ²_IF Σ_g c_g²/n_g): the first-order standard error of Σ_j w_j FD(S_j)."""
    n = np.asarray(sizes, dtype=np.float64)
    return math.sqrt(max(sigma2_if, 0.0) * float((coefficients**2 / n).sum()))
