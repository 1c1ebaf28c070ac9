"""CMMD: against the reference formula (naive), invariants, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fideval.errors import FidevalError
from fideval.metrics import cmmd


def naive_cmmd(x, y, sigma=10.0, scale=1000.0, unbiased=False):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)

    def k(a, b):
        return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * sigma**2))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    if unbiased:
        return scale * (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean()
        )
    return scale * (kxx.mean() + kyy.mean() - 2 * kxy.mean())


@pytest.fixture
def sets():
    rng = np.random.default_rng(3)
    return rng.normal(size=(150, 32)), rng.normal(size=(120, 32)) + 0.4


@pytest.mark.parametrize("unbiased", [False, True])
def test_matches_naive(sets, unbiased):
    x, y = sets
    got = cmmd(x, y, unbiased=unbiased)
    assert got == pytest.approx(naive_cmmd(x, y, unbiased=unbiased), rel=1e-9, abs=1e-12)
    chunked = cmmd(x, y, unbiased=unbiased, block_bytes=3 * 150 * 8)
    assert chunked == pytest.approx(got, rel=1e-12, abs=1e-13)


def test_self_is_zero_and_scale_invariant(sets):
    x, y = sets
    assert cmmd(x, x) == 0.0
    assert cmmd(x, 5.0 * x) == pytest.approx(0.0, abs=1e-12)  # L2-normalised first
    assert cmmd(x, y) > 0
    assert cmmd(x, y, sigma=5.0, scale=1.0) == pytest.approx(
        naive_cmmd(x, y, sigma=5.0, scale=1.0), rel=1e-9
    )


def test_errors(sets):
    x, y = sets
    with pytest.raises(FidevalError, match=r"d=32.*d=3"):
        cmmd(x, y[:, :3])
    z = x.copy()
    z[[2, 8]] = 0.0
    with pytest.raises(FidevalError, match=r"x: 2 rows are all zeros \(first rows: 2, 8\)"):
        cmmd(z, y)
