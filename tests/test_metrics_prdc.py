"""PRDC: against a naive full-matrix implementation, invariants, seeds, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fideval.errors import FidevalError, NonFiniteFeaturesError
from fideval.metrics import prdc


def naive_prdc(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> dict[str, float]:
    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    drr, dff, drf = dist(real, real), dist(fake, fake), dist(real, fake)
    np.fill_diagonal(drr, np.inf)
    np.fill_diagonal(dff, np.inf)
    r_pr = np.sort(drr, axis=1)[:, k_pr - 1]
    r_dc = np.sort(drr, axis=1)[:, k_dc - 1]
    f_pr = np.sort(dff, axis=1)[:, k_pr - 1]
    return {
        "precision": (drf < r_pr[:, None]).any(axis=0).mean(),
        "recall": (drf < f_pr[None, :]).any(axis=1).mean(),
        "density": (drf < r_dc[:, None]).sum(axis=0).mean() / k_dc,
        "coverage": (drf.min(axis=1) < r_dc).mean(),
    }


@pytest.fixture
def sets():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(220, 6))
    fake = rng.normal(size=(180, 6)) * 0.8 + 0.3
    return real, fake


@pytest.mark.parametrize(("k", "k_pr", "k_dc"), [(5, None, None), (5, 3, 5), (2, 4, 1)])
def test_matches_naive(sets, k, k_pr, k_dc):
    real, fake = sets
    res = prdc(real, fake, k=k, k_pr=k_pr, k_dc=k_dc)
    ref = naive_prdc(real, fake, k_pr or k, k_dc or k)
    for key, val in ref.items():
        assert getattr(res, key) == pytest.approx(val, abs=1e-12), key


def test_chunked_equals_unchunked(sets):
    real, fake = sets
    a = prdc(real, fake, k=3)
    b = prdc(real, fake, k=3, block_bytes=5 * 220 * 8)
    assert a == b


def test_identical_sets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    res = prdc(x, x.copy(), k=5)
    assert res.precision == 1.0
    assert res.recall == 1.0
    assert res.coverage == 1.0


def test_mode_collapse_high_precision_low_recall():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(800, 8))
    fake = 0.05 * rng.normal(size=(800, 8))  # everything near the real mode
    res = prdc(real, fake, k=5)
    assert res.precision > 0.95
    assert res.recall < 0.1
    assert res.coverage < 0.3


def test_max_samples_seeded(sets):
    real, fake = sets
    a = prdc(real, fake, max_samples=100, seed=4)
    b = prdc(real, fake, max_samples=100, seed=4)
    c = prdc(real, fake, max_samples=100, seed=5)
    assert a == b
    assert (a.n_real, a.n_fake) == (100, 100)
    assert a != c
    # the subsample is the documented draw: real first, then fake, sorted indices
    rng = np.random.default_rng(4)
    ir = np.sort(rng.choice(220, 100, replace=False))
    if_ = np.sort(rng.choice(180, 100, replace=False))
    ref = naive_prdc(real[ir], fake[if_], 5, 5)
    assert a.precision == pytest.approx(ref["precision"])
    assert a.density == pytest.approx(ref["density"])


def test_torch_input(sets):
    real, fake = sets
    assert prdc(torch.from_numpy(real), torch.from_numpy(fake)) == prdc(real, fake)


def test_errors(sets):
    real, fake = sets
    with pytest.raises(FidevalError, match=r"real has d=6, fake has d=4"):
        prdc(real, fake[:, :4])
    with pytest.raises(FidevalError, match=r"fake: 5 rows; k=5 .* at least 6"):
        prdc(real, fake[:5])
    bad = fake.copy()
    bad[17, 3] = np.nan
    with pytest.raises(
        NonFiniteFeaturesError, match=r"gen\.npy: 1 NaN/Inf value\(s\) in 1 row\(s\) \(rows 17\)"
    ):
        prdc(real, bad, names=("real.npy", "gen.npy"))


# --------------------------------------------------------------------------- exact ties
#
# A fake that is an exact copy of a real point x_j is at distance d(r, x_j) from every
# real r. When x_j is r's k-th neighbour, the copy lies on the boundary of B(r) and the
# strict "<" puts it outside. Both the `prdc` package and a brute-force float64
# computation decide this exactly, because each computes every pair the same way.


def brute_force(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int):
    """naive_prdc's numbers, plus the margins of every comparison that is not a copy tie.

    Distances by direct differences in float64 (numpy's sum of a contiguous row is a
    function of that row only, so copies give identical values). Returns the four
    metrics, the number of exact ties (distance == radius) and the smallest relative
    gap |d − radius| / radius among all other comparisons.
    """

    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    drr, dff, drf = dist(real, real), dist(fake, fake), dist(real, fake)
    np.fill_diagonal(drr, np.inf)
    np.fill_diagonal(dff, np.inf)
    r_pr = np.sort(drr, axis=1)[:, k_pr - 1]
    r_dc = np.sort(drr, axis=1)[:, k_dc - 1]
    f_pr = np.sort(dff, axis=1)[:, k_pr - 1]
    metrics = naive_prdc(real, fake, k_pr, k_dc)
    gaps = [drf - r_pr[:, None], drf - r_dc[:, None], drf - f_pr[None, :]]
    scale = [r_pr[:, None], r_dc[:, None], f_pr[None, :]]
    ties = sum(int((g == 0).sum()) for g in gaps)
    with np.errstate(divide="ignore"):  # radius 0 (repeated points): any gap is infinite
        rel = min(
            float(np.min(np.abs(g[g != 0]) / np.broadcast_to(sc, g.shape)[g != 0]))
            for g, sc in zip(gaps, scale, strict=True)
        )
    return metrics, ties, rel


def copies_of_reals(seed: int, n: int = 400, d: int = 32, n_copy: int = 150, n_new: int = 50):
    """Every real row twice, and fakes that are exact copies of real rows plus new ones."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n // 2, d))
    real = np.concatenate([base, base[rng.permutation(n // 2)]])
    fake = np.concatenate([real[rng.choice(n, n_copy, replace=False)], rng.normal(size=(n_new, d))])
    return real, fake[rng.permutation(len(fake))]


def _prdc_package(real, fake, k):
    import contextlib
    import io

    prdc_pkg = pytest.importorskip("prdc")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the set sizes
        return prdc_pkg.compute_prdc(real, fake, k)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_exact_copies_equal_brute_force(seed):
    """The issue's case: duplicated real rows, fakes copying real points."""
    real, fake = copies_of_reals(seed)
    k = 5
    ref, ties, rel_gap = brute_force(real, fake, k, k)
    assert ties > 0  # copies sit exactly on some ball's boundary: the case under test
    assert rel_gap > 1e-9  # no other near-tie: any exact method must agree exactly
    for block_bytes in (None, 7 * 1024):
        res = prdc(real, fake, k=k, block_bytes=block_bytes)
        for key, val in ref.items():
            assert getattr(res, key) == pytest.approx(val, abs=1e-12), (key, block_bytes)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_exact_copies_equal_the_prdc_package(seed):
    """Same inputs through Naeem et al.'s `prdc` package (strict "<", one k)."""
    real, fake = copies_of_reals(seed)
    pkg = _prdc_package(real, fake, 5)
    res = prdc(real, fake, k=5)
    for key in ("precision", "recall", "density", "coverage"):
        assert getattr(res, key) == pytest.approx(float(pkg[key]), abs=1e-12), key


@pytest.mark.parametrize(("k_pr", "k_dc"), [(3, 5), (5, 2), (1, 4)])
def test_exact_copies_both_ways_with_separate_k(k_pr, k_dc):
    """Copies in both directions (reals copying fakes too), repeats inside each set,
    separate k for precision/recall and density/coverage, several strip sizes."""
    rng = np.random.default_rng(11)
    pts = rng.normal(size=(120, 8))
    real = np.concatenate([pts[:90], pts[:20], pts[100:110]])  # repeats; 100..109 shared
    fake = np.concatenate([pts[60:120], pts[60:70], pts[:15]])  # repeats; 60..89, 0..14 shared
    real, fake = real[rng.permutation(len(real))], fake[rng.permutation(len(fake))]
    ref, ties, rel_gap = brute_force(real, fake, k_pr, k_dc)
    assert ties > 0 and rel_gap > 1e-9
    for block_bytes in (None, 3 * 200 * 8, 1):
        res = prdc(real, fake, k_pr=k_pr, k_dc=k_dc, block_bytes=block_bytes)
        for key, val in ref.items():
            assert getattr(res, key) == pytest.approx(val, abs=1e-12), (key, block_bytes)


def test_float32_exact_copies_equal_brute_force_of_the_rounded_inputs():
    """dtype="float32" rounds the inputs; copies stay copies, so ties stay exact."""
    real, fake = copies_of_reals(7, n=120, d=6, n_copy=50, n_new=20)
    r32, f32 = (
        real.astype(np.float32).astype(np.float64),
        fake.astype(np.float32).astype(np.float64),
    )
    ref, ties, rel_gap = brute_force(r32, f32, 5, 5)
    assert ties > 0
    assert rel_gap > 1e-4  # far above float32 round-off (~1e-6): only copies are close
    res = prdc(real, fake, k=5, dtype="float32")
    for key, val in ref.items():
        assert getattr(res, key) == pytest.approx(val, abs=1e-12), key


def test_mode_collapse_copies_and_all_identical():
    """Hundreds of copies of a few points (a collapsed generator), and sets of one point."""
    rng = np.random.default_rng(5)
    real = np.concatenate([rng.normal(size=(150, 4)), np.repeat(rng.normal(size=(2, 4)), 30, 0)])
    fake = np.repeat(real[[3, 7, 160]], 100, axis=0)  # 3 distinct points, 100 times each
    ref, _, _ = brute_force(real, fake, 5, 5)
    res = prdc(real, fake, k=5)
    for key, val in ref.items():
        assert getattr(res, key) == pytest.approx(val, abs=1e-12), key
    # Every point the same: all radii are 0 and strict "<" admits nothing.
    same = np.ones((10, 3))
    res = prdc(same, same[:7].copy(), k=3)
    assert (res.precision, res.recall, res.density, res.coverage) == (0.0, 0.0, 0.0, 0.0)
    assert res == prdc(same, same[:7].copy(), k=3, block_bytes=1)


def test_knn_radii_and_unique_rows_with_repeats():
    """The one k-NN radius routine: repeats are neighbours at distance exactly 0."""
    from fideval.metrics._distances import knn_sq_radii, unique_rows

    rng = np.random.default_rng(9)
    pts = rng.normal(size=(40, 5))
    zero = np.zeros((1, 5))
    x = np.concatenate([pts, pts[:10], pts[:3], zero, -zero])  # repeats; -0.0 equals 0.0
    t = torch.from_numpy(x)
    u, inverse = unique_rows(t)
    assert torch.equal(u[inverse], t)
    assert u.shape[0] == 41  # 40 points and the zero row
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    ref = np.sort(d2, axis=1)
    radii = knn_sq_radii(t, (1, 2, 4), block_bytes=5 * 41 * 8)
    for k, r in radii.items():
        np.testing.assert_allclose(r.numpy(), ref[:, k - 1], rtol=1e-12, atol=1e-15)
        repeated = np.array([np.sum((x == row).all(axis=1)) for row in x]) - 1 >= k
        assert (r.numpy()[repeated] == 0).all()  # exactly 0, not round-off
    assert torch.equal(knn_sq_radii(t, 2, block_bytes=5 * 41 * 8), radii[2])
    with pytest.raises(FidevalError, match="k=60 nearest neighbours need"):
        knn_sq_radii(t, 60)
