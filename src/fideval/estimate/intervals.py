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

__all__ = ["influence_sd", "influence_variance", "linear_se", "linear_se_sd", "t_quantile"]


def t_quantile(level: float, df: int) -> float:
    """Two-sided Student-t quantile t_{(1+level)/2, df} (reuses fideval.metrics.replicate)."""
    return float(student_t_ppf(0.5 + level / 2.0, df))


def influence_sd(
    full: float, leave_one_out: Sequence[float], sizes: Sequence[int]
) -> tuple[float, np.ndarray]:
    """σ̂_IF = √σ̂²_IF from the delete-a-group jackknife, and the group values e_g.

    e_g = −(N − n_g)/n_g · (FD_{−g} − FD_N), ē = Σ n_g e_g / N and
    σ̂²_IF = Σ_g n_g (e_g − ē)²/(K − 1). The squares are taken of (e_g − ē)/2^j with 2^j
    the largest |e_g − ē| (exact), so σ̂_IF is finite whenever the FDs are, even where
    σ̂²_IF itself (FD² units) would overflow float64.

    Args:
        full: FD of all N samples.
        leave_one_out: FD with group g deleted, for g = 0..K−1.
        sizes: n_g, the group sizes.

    Returns:
        (σ̂_IF in FD units·√samples, e_g array of length K).
    """
    n = np.asarray(sizes, dtype=np.float64)
    total = float(n.sum())
    loo = np.asarray(leave_one_out, dtype=np.float64)
    e = -(loo - full) * ((total - n) / n)
    dev = e - float(((n / total) * e).sum())
    k = len(n)
    if k < 2:
        return math.nan, e
    top = float(np.abs(dev).max())
    if top == 0.0:
        return 0.0, e
    j = math.frexp(top)[1]
    z = np.ldexp(dev, -j)
    return math.ldexp(math.sqrt(float((n * z * z).sum()) / (k - 1)), j), e


def influence_variance(
    full: float, leave_one_out: Sequence[float], sizes: Sequence[int]
) -> tuple[float, np.ndarray]:
    """σ̂²_IF (squared FD units per sample; inf beyond float64) and the group values e_g
    (see :func:`influence_sd`)."""
    sd, e = influence_sd(full, leave_one_out, sizes)
    return sd * sd, e


def linear_se(sigma2_if: float, coefficients: np.ndarray, sizes: Sequence[int]) -> float:
    """√(σ²_IF Σ_g c_g²/n_g): the first-order standard error of Σ_j w_j FD(S_j)."""
    n = np.asarray(sizes, dtype=np.float64)
    return math.sqrt(max(sigma2_if, 0.0) * float((coefficients**2 / n).sum()))


def linear_se_sd(sigma_if: float, coefficients: np.ndarray, sizes: Sequence[int]) -> float:
    """σ_IF·√(Σ_g c_g²/n_g): :func:`linear_se` from σ_IF, free of its square's overflow."""
    n = np.asarray(sizes, dtype=np.float64)
    return sigma_if * math.sqrt(float((coefficients**2 / n).sum()))
