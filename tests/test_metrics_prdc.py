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
    with pytest.raises(NonFiniteFeaturesError, match=r"gen\.npy: 1 non-finite .*first rows: 17"):
        prdc(real, bad, names=("real.npy", "gen.npy"))
