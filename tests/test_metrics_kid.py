"""KID: against a naive O(N²) numpy implementation, invariants, seeds, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fideval.errors import FidevalError, NonFiniteFeaturesError
from fideval.metrics import kid, mmd2_unbiased


def naive_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.sum() / (m * n)
    )


@pytest.fixture
def sets():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 12))
    y = rng.normal(size=(250, 12)) * 1.1 + 0.2
    return x, y


def test_full_set_matches_naive(sets):
    x, y = sets
    res = kid(x, y, subsets=1, subset_size=None)
    assert res.value == pytest.approx(naive_mmd2_unbiased(x, y), rel=1e-12)
    assert res.std == 0.0
    assert (res.subset_size_x, res.subset_size_y) == (300, 250)


def test_chunked_equals_single_block(sets):
    x, y = sets
    one = mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y))
    tiny = mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y), block_bytes=7 * 250 * 8)
    assert tiny == pytest.approx(one, rel=1e-12)


def test_subsets_match_naive_with_same_draws(sets):
    x, y = sets
    res = kid(x, y, subsets=7, subset_size=100, seed=3)
    rng = np.random.default_rng(3)
    vals = []
    for _ in range(7):
        xs = x[rng.choice(len(x), 100, replace=False)]
        ys = y[rng.choice(len(y), 100, replace=False)]
        vals.append(naive_mmd2_unbiased(xs, ys))
    np.testing.assert_allclose(res.values, vals, rtol=1e-11)
    assert res.value == pytest.approx(np.mean(vals), rel=1e-11)
    assert res.std == pytest.approx(np.std(vals, ddof=0), rel=1e-9)


def test_matches_clean_fid_full_set():
    cleanfid = pytest.importorskip("cleanfid.fid")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 16))
    y = rng.normal(size=(200, 16)) + 0.3
    # With M = N the subset is a permutation of the whole set: the value is deterministic.
    ref = cleanfid.kernel_distance(x, y, num_subsets=1, max_subset_size=200)
    assert kid(x, y, subsets=1, subset_size=200).value == pytest.approx(ref, rel=1e-10)


def test_identical_copy_is_exactly_the_negative_diagonal_bias():
    # X against an exact copy of itself is not two independent samples: the U-statistic
    # gives −2/(m−1)·(mean_i k(x_i,x_i) − mean_ij k(x_i,x_j)) < 0, which is O(1/m).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    m, d = x.shape
    k = (x @ x.T / d + 1) ** 3
    expected = -2.0 / (m - 1) * (np.mean(np.diag(k)) - k.mean())
    got = kid(x, x.copy(), subsets=1, subset_size=None).value
    assert got == pytest.approx(expected, rel=1e-10)
    assert got < 0


def test_same_distribution_is_near_zero_shifted_is_not():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1500, 8))
    y = rng.normal(size=(1500, 8))
    z = rng.normal(size=(1500, 8)) + 0.5
    same = kid(x, y, subsets=30, subset_size=300, seed=1)
    shifted = kid(x, z, subsets=30, subset_size=300, seed=1)
    assert abs(same.value) < 3 * same.std
    assert shifted.value > 10 * abs(same.value)
    assert shifted.value > 5 * shifted.std / np.sqrt(30)


def test_seeded_determinism(sets):
    x, y = sets
    a = kid(x, y, subsets=5, subset_size=50, seed=11)
    b = kid(x, y, subsets=5, subset_size=50, seed=11)
    c = kid(x, y, subsets=5, subset_size=50, seed=12)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)


def test_torch_and_float32_inputs(sets):
    x, y = sets
    ref = kid(x, y, subsets=1, subset_size=None).value
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    assert kid(xt, yt, subsets=1, subset_size=None).value == pytest.approx(ref, rel=1e-5)
    f32 = kid(x, y, subsets=1, subset_size=None, dtype="float32").value
    assert f32 == pytest.approx(ref, rel=1e-3)


def test_errors(sets):
    x, y = sets
    with pytest.raises(FidevalError, match=r"d=12.*d=5"):
        kid(x, y[:, :5])
    with pytest.raises(FidevalError, match="subset_size 1000 exceeds the 300 rows of x"):
        kid(x, y, subset_size=1000)
    bad = x.copy()
    bad[[4, 9], 2] = np.nan
    bad[10, 0] = np.inf
    with pytest.raises(
        NonFiniteFeaturesError,
        match=r"A\.npy: 3 NaN/Inf value\(s\) in 3 row\(s\) \(rows 4, 9, 10\)",
    ):
        kid(bad, y, subset_size=100, names=("A.npy", "B.npy"))
    with pytest.raises(FidevalError, match=r"2-D|dimensions"):
        kid(x[0], y)
    with pytest.raises(FidevalError, match="subsets=1"):
        kid(x, y, subsets=3, subset_size=None)


def naive_mmd2_kernel(x: np.ndarray, y: np.ndarray, degree, gamma, coef0) -> float:
    def k(a, b):
        return (gamma * (a @ b.T) + coef0) ** degree

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    return (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.sum() / (m * n)
    )


@pytest.mark.parametrize(
    "kernel, param, shown, expected",
    [
        ({"degree": 2.5}, "degree", "2.5", "whole number ≥ 1"),
        ({"degree": 0}, "degree", "0", "whole number ≥ 1"),
        ({"degree": -3}, "degree", "-3", "whole number ≥ 1"),
        ({"degree": float("nan")}, "degree", "nan", "whole number ≥ 1"),
        ({"degree": True}, "degree", "True", "whole number ≥ 1"),
        ({"gamma": 0.0}, "gamma", "0.0", "> 0"),
        ({"gamma": -0.5}, "gamma", "-0.5", "> 0"),
        ({"gamma": float("inf")}, "gamma", "inf", "> 0"),
        ({"coef0": -1.0}, "coef0", "-1.0", "≥ 0"),
        ({"coef0": float("nan")}, "coef0", "nan", "≥ 0"),
    ],
)
def test_invalid_kernels_are_rejected(sets, kernel, param, shown, expected):
    """A kernel that is not positive semidefinite (or NaN, for p = 2.5) is an error
    naming the parameter, the value given and what is expected, in kid() and in
    mmd2_unbiased() alike."""
    x, y = sets
    pattern = rf"{param} must be .*{expected}.*got {shown}"
    with pytest.raises(FidevalError, match=pattern):
        kid(x, y, subsets=2, subset_size=50, **kernel)
    with pytest.raises(FidevalError, match=pattern):
        mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y), **kernel)


def test_valid_kernel_settings_match_naive(sets):
    """Whole-valued floats (3.0) are degree 3; other valid kernels match the naive sum."""
    x, y = sets
    x, y = x[:120], y[:100]
    for degree, gamma, coef0 in ((3.0, None, 1.0), (1, 0.3, 0.0), (2, 0.05, 2.5)):
        g = 1.0 / x.shape[1] if gamma is None else gamma
        got = kid(x, y, subsets=1, subset_size=None, degree=degree, gamma=gamma, coef0=coef0)
        want = naive_mmd2_kernel(x, y, int(degree), g, coef0)
        assert got.value == pytest.approx(want, rel=1e-10, abs=1e-14)
    assert kid(x, y, subsets=1, subset_size=None, degree=np.int64(3)).value == pytest.approx(
        naive_mmd2_unbiased(x, y), rel=1e-12
    )
