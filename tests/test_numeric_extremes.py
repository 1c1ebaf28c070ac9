"""Finite inputs of any magnitude: a finite FD or one clear FidevalError, never inf or a
raw torch error; and zero-width input refused.

Properties checked: the closed form FD(N(μ1, a·I), N(μ2, b·I)) = ‖μ1 − μ2‖² + d(√a − √b)²
at a, b from 1e-300 to 1e300; scale equivariance FD(s·x, s·y) = s²·FD(x, y) for
s = 1e-150 … 1e150 on every route (statistics with and without N, the cached reference,
its features comparison, the features route, and the estimators); and an overflow error
that names the magnitude when the value itself exceeds float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import random_spd
from fideval import GroupedStats
from fideval.errors import FidevalError
from fideval.estimate import estimate_fid
from fideval.frechet import (
    FrechetReference,
    _check_features,
    frechet_details,
    frechet_from_features,
    validate_moments,
)

SCALES = (1e-150, 1e-100, 1e-20, 1e20, 1e100, 1e150)


def isotropic_fd(mu1: np.ndarray, a: float, mu2: np.ndarray, b: float) -> float:
    """Closed form for N(μ1, a·I) against N(μ2, b·I)."""
    d = mu1.shape[0]
    return float(np.sum((mu1 - mu2) ** 2) + d * (math.sqrt(a) - math.sqrt(b)) ** 2)


@pytest.mark.parametrize(
    ("a", "b"),
    [(1e200, 1e200), (1e300, 1.0), (1.0, 1e300), (1e-300, 4e-300), (1e200, 4e200), (1e-200, 1.0)],
)
def test_isotropic_closed_form_at_extreme_scales(a: float, b: float) -> None:
    d = 6
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    expected = isotropic_fd(mu1, a, mu2, b)
    for kw in ({}, {"n1": 100, "n2": 200}):
        r = frechet_details(mu1, a * np.eye(d), mu2, b * np.eye(d), **kw)
        assert math.isfinite(r.value) and math.isfinite(r.trace_sqrt)
        assert r.value == pytest.approx(expected, rel=1e-12, abs=1e-300)
    ref = FrechetReference(mu2, b * np.eye(d))
    assert ref.compare(mu1, a * np.eye(d)).value == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_huge_identical_covariances_give_zero_not_a_torch_error() -> None:
    d = 8
    sigma = 1e200 * np.eye(d)
    mu = np.arange(d, dtype=float)
    assert frechet_details(mu, sigma, mu, sigma).value == pytest.approx(0.0, abs=1e-12 * 1e200 * d)
    assert frechet_details(mu, sigma, mu + 1.0, sigma).value == pytest.approx(d, rel=1e-9)


def test_huge_common_mean_keeps_the_covariance_term() -> None:
    """μ = 1e200 on both sides, covariances I and 4I: FD = d (the means cancel exactly)."""
    d = 5
    mu = np.full(d, 1e200)
    r = frechet_details(mu, np.eye(d), mu, 4.0 * np.eye(d))
    assert r.value == pytest.approx(d, rel=1e-12)


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("s", SCALES)
def test_statistics_routes_are_scale_equivariant(s: float, rng: np.random.Generator) -> None:
    d = 10
    x = rng.standard_normal((40, d)) @ random_spd(rng, d, cond=30.0) + 0.3
    y = rng.standard_normal((7, d)) * 1.5  # N < d: singular
    (m1, s1), (m2, s2) = _moments(x), _moments(y)
    for kw in ({}, {"n1": 40, "n2": 7}):
        base = frechet_details(m1, s1, m2, s2, **kw)
        big = frechet_details(s * m1, s * s * s1, s * m2, s * s * s2, **kw)
        assert big.value == pytest.approx(s * s * base.value, rel=1e-9)
        assert big.method == base.method and big.rank1 == base.rank1
    ref = FrechetReference(s * m2, s * s * s2, n=7)
    base_ref = FrechetReference(m2, s2, n=7)
    assert ref.compare(s * m1, s * s * s1).value == pytest.approx(
        s * s * base_ref.compare(m1, s1).value, rel=1e-9
    )
    assert ref.compare_features(s * x).value == pytest.approx(
        s * s * base_ref.compare_features(x).value, rel=1e-9
    )


@pytest.mark.parametrize("s", SCALES)
def test_features_route_is_scale_equivariant(s: float, rng: np.random.Generator) -> None:
    x, y = rng.standard_normal((30, 6)), rng.standard_normal((25, 6)) * 2 + 1
    base = frechet_from_features(x, y).value
    r = frechet_from_features(s * x, s * y)
    assert math.isfinite(r.value)
    assert r.value == pytest.approx(s * s * base, rel=1e-9)


def test_reference_and_side_one_at_very_different_scales(rng: np.random.Generator) -> None:
    """Side 1 at 1e150 against a reference at 1e-150: the products of the two sides span
    1e0 but each trace is 1e±300; the value is the larger trace to round-off."""
    d = 6
    a = random_spd(rng, d, cond=10.0)
    ref = FrechetReference(np.zeros(d), 1e-300 * a)
    r = ref.compare(np.zeros(d), 1e300 * a)
    assert r.value == pytest.approx(1e300 * np.trace(a), rel=1e-12)


def test_overflowing_value_is_a_clear_error() -> None:
    d = 4
    with pytest.raises(FidevalError, match=r"about 1e40[0-9], which overflows float64"):
        frechet_details(np.full(d, 1e200), np.eye(d), np.zeros(d), np.eye(d))
    with pytest.raises(FidevalError, match=r"overflows float64"):
        frechet_details(np.zeros(d), 1e308 * np.eye(d), np.zeros(d), np.eye(d))
    ref = FrechetReference(np.zeros(d), np.eye(d))
    with pytest.raises(FidevalError, match=r"overflows float64"):
        ref.compare(np.full(d, 1e200), np.eye(d))


def test_overflowing_features_are_a_clear_error(rng: np.random.Generator) -> None:
    x, y = rng.standard_normal((20, 3)), rng.standard_normal((20, 3)) + 1.0
    with pytest.raises(FidevalError, match=r"overflows float64"):
        frechet_from_features(1e200 * x, 1e200 * y)
    ref = FrechetReference(np.zeros(3), np.eye(3))
    with pytest.raises(FidevalError, match=r"overflows float64"):
        ref.compare_features(1e200 * x)


def test_estimators_are_scale_equivariant(rng: np.random.Generator) -> None:
    """Every estimate is a linear combination of FDs: it scales by s², s = 1e150."""
    d, k, s = 8, 6, 1e150
    x = rng.standard_normal((600, d)) @ random_spd(rng, d, cond=5.0) + 0.2
    y = rng.standard_normal((900, d))
    estimates = []
    for scale in (1.0, s):
        gs = GroupedStats(k)
        gs.update(scale * x)
        ref = FrechetReference(scale * y.mean(0), scale * scale * np.cov(y, rowvar=False), n=900)
        estimates.append(estimate_fid(gs, ref))
    base, big = estimates
    for name in ("fid", "fid_bias_corrected", "fid_infinity", "fid_at_target"):
        assert math.isfinite(big.value(name))
        assert big.value(name) == pytest.approx(s * s * base.value(name), rel=1e-9)


def test_zero_width_features_are_refused() -> None:
    with pytest.raises(FidevalError, match=r"zero width"):
        frechet_from_features(np.zeros((5, 0)), np.zeros((6, 0)))
    ref = FrechetReference(np.zeros(2), np.eye(2))
    with pytest.raises(FidevalError, match=r"zero width"):
        ref.compare_features(np.zeros((5, 0)))


def test_zero_width_is_refused_by_the_kernel_itself() -> None:
    """The kernel's own checks, for callers that bypass the array conversion."""
    with pytest.raises(FidevalError, match=r"zero width \(d = 0\); expected d ≥ 1"):
        _check_features(torch.zeros((5, 0), dtype=torch.float64), "features1")
    with pytest.raises(FidevalError, match=r"zero width \(d = 0\); expected d ≥ 1"):
        validate_moments(torch.zeros(0), torch.zeros((0, 0)), "mu1", "sigma1")


def test_zero_dimensional_moments_are_refused() -> None:
    with pytest.raises(FidevalError, match=r"zero width"):
        frechet_details(np.zeros(0), np.zeros((0, 0)), np.zeros(0), np.zeros((0, 0)))
    with pytest.raises(FidevalError, match=r"zero width"):
        FrechetReference(np.zeros(0), np.zeros((0, 0)))
