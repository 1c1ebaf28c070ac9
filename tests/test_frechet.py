"""The Fréchet kernel against closed forms, a high-precision reference and fuzzing."""

from __future__ import annotations

import importlib

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_spd
from fideval.errors import FidevalError, NonFiniteFeaturesError, NumericalError
from fideval.frechet import (
    FrechetReference,
    frechet_details,
    frechet_distance,
    frechet_from_features,
)


def sym_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def test_identical_statistics_give_zero(rng):
    s = random_spd(rng, 20, cond=1e3)
    mu = rng.standard_normal(20)
    r = frechet_details(mu, s, mu, s)
    assert abs(r.value) < 1e-10 * np.trace(s)


def test_equal_covariances_give_mean_term(rng):
    s = random_spd(rng, 16)
    m1, m2 = rng.standard_normal(16), rng.standard_normal(16)
    assert frechet_distance(m1, s, m2, s) == pytest.approx(np.sum((m1 - m2) ** 2), rel=1e-10)


def test_commuting_diagonal_closed_form(rng):
    a, b = rng.uniform(0.1, 5, 32), rng.uniform(0.1, 5, 32)
    m1, m2 = rng.standard_normal(32), rng.standard_normal(32)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_non_commuting_closed_form(rng):
    # Σ2 = T Σ1 T with T SPD ⇒ (Σ1Σ2)^½ has trace tr(Σ1 T)  [since Σ1Σ2 = (Σ1 T)²].
    d = 24
    s1 = random_spd(rng, d, cond=100)
    t = random_spd(rng, d, cond=20) + 0.5 * np.eye(d)
    s2 = t @ s1 @ t
    s2 = 0.5 * (s2 + s2.T)
    mu = rng.standard_normal(d)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.trace(s1 @ t)
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(expected, rel=1e-9)


def mp_frechet(m1, s1, m2, s2, dps: int = 50) -> float:
    """Independent reference: mpmath at 50 digits, symmetric form sqrt(√Σ1 Σ2 √Σ1)."""
    mpmath.mp.dps = dps
    a = mpmath.matrix(s1.tolist())
    b = mpmath.matrix(s2.tolist())
    ev_a, q = mpmath.eigsy(a)
    ra = q * mpmath.diag([mpmath.sqrt(max(e, 0)) for e in ev_a]) * q.T
    inner = ra * b * ra
    inner = (inner + inner.T) / 2
    ev = mpmath.eigsy(inner, eigvals_only=True)
    tr_sqrt = sum(mpmath.sqrt(max(e, 0)) for e in ev)
    diff = sum((mpmath.mpf(x) - mpmath.mpf(y)) ** 2 for x, y in zip(m1, m2, strict=True))
    return float(
        diff
        + sum(a[i, i] for i in range(a.rows))
        + sum(b[i, i] for i in range(b.rows))
        - 2 * tr_sqrt
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_mpmath_reference(seed):
    rng = np.random.default_rng(seed)
    d = 8
    s1 = random_spd(rng, d, cond=1e4)
    s2 = random_spd(rng, d, cond=1e2)
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(mp_frechet(m1, s1, m2, s2), rel=1e-10)


def mp_frechet_features(x: np.ndarray, y: np.ndarray, dps: int = 50) -> float:
    """Exact reference from features at 50 digits: tr((Σ1Σ2)^½) = Σ sqrt eig(C Cᵀ), C = A1 A2ᵀ."""
    mpmath.mp.dps = dps

    def centred(z):
        m = mpmath.matrix(z.tolist())
        n, d = m.rows, m.cols
        mean = [sum(m[i, j] for i in range(n)) / n for j in range(d)]
        a = mpmath.matrix(n, d)
        for i in range(n):
            for j in range(d):
                a[i, j] = (m[i, j] - mean[j]) / mpmath.sqrt(n - 1)
        return a, mean

    a1, mu1 = centred(x)
    a2, mu2 = centred(y)
    c = a1 * a2.T
    ev = mpmath.eigsy(c * c.T, eigvals_only=True)
    tr_sqrt = sum(mpmath.sqrt(max(e, 0)) for e in ev)
    tr1 = sum(a1[i, j] ** 2 for i in range(a1.rows) for j in range(a1.cols))
    tr2 = sum(a2[i, j] ** 2 for i in range(a2.rows) for j in range(a2.cols))
    diff = sum((p - q) ** 2 for p, q in zip(mu1, mu2, strict=True))
    return float(diff + tr1 + tr2 - 2 * tr_sqrt)


def test_rank_deficient_matches_mpmath_and_features():
    rng = np.random.default_rng(7)
    d, n = 10, 6
    x, y = rng.standard_normal((n, d)), rng.standard_normal((n + 1, d)) + 0.3
    m1, s1 = x.mean(0), np.cov(x, rowvar=False)
    m2, s2 = y.mean(0), np.cov(y, rowvar=False)
    exact = frechet_from_features(x, y)
    assert exact.method == "features-nuclear"
    assert exact.value == pytest.approx(mp_frechet_features(x, y), rel=1e-12)
    r = frechet_details(m1, s1, m2, s2, n1=n, n2=n + 1)
    assert r.method == "eigh-eigvalsh"
    # The statistics path clamps round-off eigenvalues; within its stated bound.
    assert abs(r.value - exact.value) <= 1e-9 * exact.value + r.clamped_fd_bound
    assert r.rank2 == n  # rank of the n+1 sample covariance is n
    assert any("rank-deficient" in w for w in r.warnings)


def test_scaling_law(rng):
    x, y = rng.standard_normal((200, 12)), rng.standard_normal((150, 12)) * 2 + 1
    base = frechet_from_features(x, y).value
    for c in (1e-4, 3.0, 1e4):
        assert frechet_from_features(c * x, c * y).value == pytest.approx(c * c * base, rel=1e-9)


def test_features_path_equals_statistics_path(rng):
    x, y = rng.standard_normal((40, 64)), rng.standard_normal((50, 64)) * 0.7
    exact = frechet_from_features(x, y).value
    stat = frechet_details(
        x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    ).value
    assert stat == pytest.approx(exact, rel=1e-9)


def scipy_frechet(m1, s1, m2, s2) -> float:
    """Independent float64 reference: scipy's sqrtm on the symmetric form √Σ1 Σ2 √Σ1."""
    from scipy import linalg

    r1 = linalg.sqrtm(s1).real
    inner = r1 @ s2 @ r1
    tr_sqrt = np.trace(linalg.sqrtm(0.5 * (inner + inner.T)).real)
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def test_reference_reused_for_many_comparisons_matches_scipy(rng):
    """One factored reference, compared with several sets in turn (the factor is reused):
    each value equals scipy's symmetric-form FD, by both the statistics and features routes.
    The covariances are well conditioned (d=30 from 300-400 samples), so both sides are
    float64 round-off apart: 1e-10 relative leaves several orders of magnitude of margin."""
    d = 30
    y = rng.standard_normal((400, d)) @ random_spd(rng, d, cond=10.0) + 0.5
    mu_r, sigma_r = y.mean(0), np.cov(y, rowvar=False)
    ref = FrechetReference(mu_r, sigma_r, n=400)
    for scale in (0.5, 1.0, 2.0, 1.0):
        x = rng.standard_normal((300, d)) * scale
        mu, sigma = x.mean(0), np.cov(x, rowvar=False)
        expected = scipy_frechet(mu, sigma, mu_r, sigma_r)
        assert ref.compare(mu, sigma).value == pytest.approx(expected, rel=1e-10)
        assert ref.compare(mu, sigma, n=300).value == pytest.approx(expected, rel=1e-10)
        assert ref.compare_features(x).value == pytest.approx(expected, rel=1e-10)
    # FD is symmetric: the reference on the other side gives the same number.
    other = FrechetReference(mu, sigma)
    assert other.compare(mu_r, sigma_r).value == pytest.approx(expected, rel=1e-10)


def test_factor_is_computed_once(rng, monkeypatch):
    d = 10
    y = rng.standard_normal((50, d))
    ref = FrechetReference(y.mean(0), np.cov(y, rowvar=False))
    calls = []
    monkeypatch.setattr(
        importlib.import_module("fideval.frechet"), "_factor", lambda *a, **k: calls.append(1)
    )
    ref.compare(y.mean(0) + 1, np.cov(y, rowvar=False))
    assert calls == []


def test_torch_inputs_and_float32(rng):
    x, y = rng.standard_normal((100, 8)), rng.standard_normal((80, 8))
    m1, s1, m2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    v = frechet_distance(m1, s1, m2, s2)
    vt = frechet_distance(*(torch.from_numpy(a) for a in (m1, s1, m2, s2)))
    assert vt == pytest.approx(v, rel=1e-12)
    v32 = frechet_distance(*(torch.from_numpy(a).float() for a in (m1, s1, m2, s2)))
    assert v32 == pytest.approx(v, rel=1e-5)


def test_matches_pytorch_fid_formula_on_well_conditioned(rng):
    scipy_linalg = pytest.importorskip("scipy.linalg")
    x, y = rng.standard_normal((500, 20)), rng.standard_normal((400, 20)) + 0.1
    m1, s1, m2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    covmean = scipy_linalg.sqrtm(s1 @ s2).real
    ref = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-10)


# ----------------------------------------------------------------- fuzzing


@st.composite
def covariance_pairs(draw):
    d = draw(st.integers(2, 24))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = 10.0 ** draw(st.integers(-8, 8))
    kind = draw(st.sampled_from(["rank_deficient", "ill_conditioned", "identical", "zero"]))

    def make():
        if kind == "rank_deficient":
            r = draw(st.integers(1, d))
            b = rng.standard_normal((d, r))
            return b @ b.T
        if kind == "zero":
            return np.zeros((d, d))
        cond = 10.0 ** draw(st.integers(0, 12))
        return random_spd(rng, d, cond=cond)

    s1 = make() * scale
    s2 = s1.copy() if kind == "identical" else make() * scale
    m1 = rng.standard_normal(d) * np.sqrt(scale)
    m2 = m1.copy() if kind == "identical" else rng.standard_normal(d) * np.sqrt(scale)
    return m1, s1, m2, s2


@settings(max_examples=150, deadline=None)
@given(covariance_pairs())
def test_fuzz_never_complex_nan_or_negative(pair):
    m1, s1, m2, s2 = pair
    r = frechet_details(m1, s1, m2, s2)
    assert isinstance(r.value, float)
    assert np.isfinite(r.value)
    assert r.value >= 0.0
    # Symmetric form as an independent check: the result is within its own round-off.
    ref_trace_sqrt = np.trace(sym_sqrt(sym_sqrt(s1) @ s2 @ sym_sqrt(s1)))
    ref = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * ref_trace_sqrt
    scale = np.trace(s1) + np.trace(s2) + np.sum((m1 - m2) ** 2) + 1e-300
    assert abs(r.value - max(ref, 0.0)) <= 1e-5 * scale + r.clamped_fd_bound


# ----------------------------------------------------------------- errors


def test_error_nan_in_sigma():
    s = np.eye(3)
    s[1, 1] = np.nan
    with pytest.raises(NonFiniteFeaturesError, match="sigma1 contains 1 NaN"):
        frechet_details(np.zeros(3), s, np.zeros(3), np.eye(3))


def test_error_shape_mismatch():
    with pytest.raises(FidevalError, match="mu1 has d=3, mu2 has d=4"):
        frechet_details(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(FidevalError, match=r"sigma2 is \(3, 3\) but mu2 has d=4"):
        frechet_details(np.zeros(4), np.eye(4), np.zeros(4), np.eye(3))
    with pytest.raises(FidevalError, match="expected a square"):
        frechet_details(np.zeros(3), np.ones((3, 2)), np.zeros(3), np.eye(3))


def test_error_asymmetric_sigma():
    s = np.eye(3)
    s[0, 1] = 0.5
    with pytest.raises(FidevalError, match="sigma2 is not symmetric"):
        frechet_details(np.zeros(3), np.eye(3), np.zeros(3), s)


def test_error_indefinite_sigma():
    s = np.diag([1.0, 1.0, -0.5])
    with pytest.raises(NumericalError, match="sigma2 is not positive semidefinite"):
        frechet_details(np.zeros(3), np.eye(3), np.zeros(3), s)
    with pytest.raises(NumericalError, match="not positive semidefinite"):
        frechet_details(np.zeros(3), s, np.zeros(3), np.eye(3))


def test_error_features():
    with pytest.raises(FidevalError, match="need at least 2 samples"):
        frechet_from_features(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(FidevalError, match="2-D"):
        frechet_from_features(np.zeros(3), np.zeros((5, 3)))
    x = np.zeros((5, 3))
    x[2, 1] = np.inf
    with pytest.raises(NonFiniteFeaturesError, match=r"rows 2\)"):
        frechet_from_features(np.ones((4, 3)), x)


def test_low_rank_route_with_known_n_is_exact_and_checked(rng):
    d, n = 64, 20
    x, y = rng.standard_normal((n, d)), rng.standard_normal((n, d)) + 0.2
    m1, s1, m2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    exact = frechet_from_features(x, y).value
    r = frechet_details(m1, s1, m2, s2, n1=n, n2=n)
    assert r.method == "range-eigh-eigvalsh" and r.rank2 == n - 1
    assert r.value == pytest.approx(exact, rel=1e-10)
    # A wrong (too small) N cannot lose mass: the trace check sends it to the full eigh.
    z = rng.standard_normal((500, d))
    sz = np.cov(z, rowvar=False)
    wrong = frechet_details(m1, s1, z.mean(0), sz, n2=10)
    assert wrong.method == "eigh-eigvalsh"
    assert wrong.value == pytest.approx(frechet_details(m1, s1, z.mean(0), sz).value, rel=1e-12)


# --------------------------------------------------------------------------- N unknown


def _singular_pair(rng, d=48, n1=20, n2=30):
    x = rng.standard_normal((n1, d)) @ random_spd(rng, d, cond=50.0)
    y = rng.standard_normal((n2, d)) * 1.3 + 0.2
    return x, y


def _stats(x):
    return x.mean(0), np.cov(x, rowvar=False)


def _counting(monkeypatch, name):
    calls = []
    original = getattr(torch.linalg, name)

    def counted(*a, **k):
        calls.append(1)
        return original(*a, **k)

    monkeypatch.setattr(torch.linalg, name, counted)
    return calls


def test_unknown_n_full_rank_reads_side_one_rank_from_the_product(rng, monkeypatch):
    """Σ2 = LLᵀ positive definite: LᵀΣ1L is congruent to Σ1 (Sylvester), so when all its
    eigenvalues clear round-off Σ1 is full rank — no factorization of Σ1 at all."""
    d = 24
    x, y = rng.standard_normal((200, d)) @ random_spd(rng, d), rng.standard_normal((150, d))
    (m1, s1), (m2, s2) = _stats(x), _stats(y)
    chol = _counting(monkeypatch, "cholesky_ex")
    eigh = _counting(monkeypatch, "eigh")
    r = frechet_details(m1, s1, m2, s2)
    assert len(chol) == 1 and not eigh  # Σ2 only
    assert r.rank1 == r.rank2 == d and r.method == "cholesky-eigvalsh"
    assert r.value == pytest.approx(frechet_from_features(x, y).value, rel=1e-10)


def test_unknown_n_singular_factors_each_side_once_without_eigh(rng, monkeypatch):
    """N unknown, both N < d: one pivoted Cholesky per side gives its rank and its factor;
    tr((Σ1Σ2)^½) from the Gram matrix of GᵀF. No eigendecomposition of a d×d matrix, one
    plain Cholesky attempt (Σ2's) in all."""
    x, y = _singular_pair(rng)
    (m1, s1), (m2, s2) = _stats(x), _stats(y)
    chol = _counting(monkeypatch, "cholesky_ex")
    eigh = _counting(monkeypatch, "eigh")
    r = frechet_details(m1, s1, m2, s2)
    assert len(chol) == 1 and not eigh
    assert r.method == "pivoted-cholesky-gram"
    assert (r.rank1, r.rank2) == (len(x) - 1, len(y) - 1)
    exact = frechet_from_features(x, y).value
    assert abs(r.value - exact) <= r.clamped_fd_bound + 1e-10 * exact
    assert abs(r.value - exact) <= 1e-10 * exact
    assert any("N unknown" in w and "pivoted Cholesky" in w for w in r.warnings)


@pytest.mark.parametrize("singular", ["side1", "side2"])
def test_unknown_n_one_side_singular(rng, singular):
    """Σ2 PD with Σ1 singular (rank from Σ1's own factorization, the product's structural
    zeros removed), and Σ2 singular with Σ1 PD (the Gram route): ranks and values."""
    d = 40
    few, many = rng.standard_normal((15, d)) + 0.1, rng.standard_normal((300, d)) * 0.7
    x, y = (few, many) if singular == "side1" else (many, few)
    (m1, s1), (m2, s2) = _stats(x), _stats(y)
    r = frechet_details(m1, s1, m2, s2)
    assert r.rank1 == min(len(x) - 1, d) and r.rank2 == min(len(y) - 1, d)
    exact = frechet_from_features(x, y).value
    assert abs(r.value - exact) <= 1e-10 * exact


def test_unknown_n_without_scipy_takes_the_eigen_route(rng, monkeypatch):
    import fideval.frechet as kernel

    x, y = _singular_pair(rng)
    (m1, s1), (m2, s2) = _stats(x), _stats(y)
    fast = frechet_details(m1, s1, m2, s2)
    monkeypatch.setattr(kernel, "_lapack_pstrf", lambda: None)
    slow = frechet_details(m1, s1, m2, s2)
    assert slow.method == "eigh-gram" and (slow.rank1, slow.rank2) == (fast.rank1, fast.rank2)
    assert slow.value == pytest.approx(fast.value, rel=1e-10)


def test_unknown_n_indefinite_side_one_is_an_error_on_the_gram_route(rng):
    d = 30
    y = rng.standard_normal((10, d))  # Σ2 singular: the Gram route
    a = rng.standard_normal((d, d))
    w, v = np.linalg.eigh(a @ a.T)
    w[0] = -1e-6 * w[-1]
    bad = (v * w) @ v.T
    with pytest.raises(NumericalError, match=r"sigma1 is not positive semidefinite"):
        frechet_details(np.zeros(d), 0.5 * (bad + bad.T), y.mean(0), np.cov(y, rowvar=False))


def test_singular_covariance_is_caught_on_the_leading_half_block(monkeypatch):
    """A covariance of N < d/2 samples has a singular leading half block (its pivots are
    Σ's first pivots): the full d×d Cholesky, doomed, is never attempted."""
    rng = np.random.default_rng(2)
    d = 520
    x, y = rng.standard_normal((120, d)), rng.standard_normal((150, d)) + 0.1
    sizes = []
    original = torch.linalg.cholesky_ex

    def recorded(a, *args, **kwargs):
        sizes.append(a.shape[-1])
        return original(a, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "cholesky_ex", recorded)
    r = frechet_details(*_stats(x), *_stats(y))
    assert sizes == [d // 2] and r.method == "pivoted-cholesky-gram"
    assert (r.rank1, r.rank2) == (119, 149)
    assert r.value == pytest.approx(frechet_from_features(x, y).value, rel=1e-10)
