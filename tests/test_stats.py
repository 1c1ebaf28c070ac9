"""Streaming statistics: equal to np.cov of the concatenation, mergeable, grouped."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fideval.errors import FidevalError, NonFiniteFeaturesError
from fideval.frechet import frechet_details
from fideval.stats import GaussianStats, GroupedStats


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 300),
    d=st.integers(1, 12),
    cuts=st.lists(st.integers(0, 300), max_size=8),
)
def test_streaming_equals_np_cov_for_any_split(seed, n, d, cuts):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * rng.uniform(0.1, 10, d) + rng.uniform(-5, 5, d)
    bounds = sorted({0, n, *(c % (n + 1) for c in cuts)})
    s = GaussianStats()
    for lo, hi in itertools.pairwise(bounds):
        s.update(x[lo:hi])
    assert s.n == n
    assert rel_err(s.mean, x.mean(0)) < 1e-12
    assert rel_err(s.cov, np.cov(x, rowvar=False).reshape(d, d)) < 1e-12


def test_merge_is_exact_and_associative(rng):
    parts = [rng.standard_normal((k, 6)) + 3 for k in (5, 17, 40)]
    a, b, c = (GaussianStats() for _ in range(3))
    for s, p in zip((a, b, c), parts, strict=True):
        s.update(p)
    left = a.copy().merge(b.copy()).merge(c.copy())
    right = a.copy().merge(b.copy().merge(c.copy()))
    full = np.concatenate(parts)
    for s in (left, right):
        assert rel_err(s.cov, np.cov(full, rowvar=False)) < 1e-12
        assert rel_err(s.mean, full.mean(0)) < 1e-12
    # Order of the batches does not matter either.
    rev = GaussianStats()
    for p in reversed(parts):
        rev.update(p)
    assert rel_err(rev.cov, left.cov) < 1e-12


def test_large_mean_small_spread_stays_exact(rng):
    # Raw Σxxᵀ in float32 fails here (docs/numerics.md); shifted float64 sums do not.
    x = (rng.standard_normal((2000, 8)) + 1e4).astype(np.float32)
    s = GaussianStats()
    for chunk in np.array_split(x, 37):
        s.update(torch.from_numpy(chunk))
    ref = np.cov(x.astype(np.float64), rowvar=False)
    assert rel_err(s.cov, ref) < 1e-12
    assert frechet_details(s.mean, s.cov, x.mean(0, dtype=np.float64), ref).value < 1e-9


def test_retained_memory_is_independent_of_n():
    """Stream 200 000 rows (25.6 MB of float64) in batches of 100: what the accumulator
    holds (everything reachable from it, measured by pickling it) stays within the d×d
    sums plus one buffer of BUFFER_ROWS rows at every N, and the result is still exact."""
    d, b, batches = 16, 100, 2000
    buffer_rows = GaussianStats.BUFFER_ROWS + b  # a flush happens once ≥ BUFFER_ROWS wait
    bound = 8 * (d * d + 2 * d + buffer_rows * d) + 16_384  # + pickle's per-object headers
    s = GaussianStats()
    sizes = {}
    rng = np.random.default_rng(0)
    for i in range(1, batches + 1):
        s.update(rng.standard_normal((b, d)) * 3 + 7)
        if i % 37 == 0 or i == batches:
            sizes[s.n] = len(pickle.dumps(s))
    assert s.n == batches * b
    assert max(sizes.values()) <= bound, sizes
    assert batches * b * d * 8 > 100 * bound  # what was fed is 100× what may be kept
    x = np.random.default_rng(0).standard_normal((batches, b, d)).reshape(-1, d) * 3 + 7
    assert rel_err(s.mean, x.mean(0)) < 1e-12
    assert rel_err(s.cov, np.cov(x, rowvar=False)) < 1e-12


def test_state_dict_round_trip(rng):
    x = rng.standard_normal((50, 5))
    s = GaussianStats()
    s.update(x)
    t = GaussianStats.from_state_dict(s.state_dict())
    t.update(x)
    s.update(x)
    assert t.n == s.n == 100
    assert rel_err(t.cov, s.cov) < 1e-13
    both = np.concatenate([x, x])
    assert rel_err(t.cov, np.cov(both, rowvar=False)) < 1e-12
    assert rel_err(t.mean, both.mean(0)) < 1e-12


def test_update_leaves_the_callers_array_untouched(rng):
    x = rng.standard_normal((20, 3))
    before = x.copy()
    s = GaussianStats()
    s.update(x)
    s.update(torch.from_numpy(x))
    assert np.array_equal(x, before)


def test_from_moments_round_trip(rng):
    x = rng.standard_normal((30, 4))
    s = GaussianStats.from_moments(30, x.mean(0), np.cov(x, rowvar=False))
    y = rng.standard_normal((20, 4))
    s.update(y)
    both = np.concatenate([x, y])
    assert rel_err(s.cov, np.cov(both, rowvar=False)) < 1e-12


@pytest.mark.parametrize("k", [1, 3, 7])
def test_grouped_recombine_to_ungrouped(rng, k):
    x = rng.standard_normal((203, 6)) * 2 + 1
    g = GroupedStats(k)
    plain = GaussianStats()
    for chunk in np.array_split(x, 9):
        g.update(chunk)
        plain.update(chunk)
    total = g.total()
    assert total.n == 203
    assert rel_err(total.cov, plain.cov) < 1e-12
    assert rel_err(total.mean, plain.mean) < 1e-12
    # Row i belongs to group i mod K, whatever the batch boundaries.
    for j in range(k):
        assert rel_err(g.group(j).mean, x[j::k].mean(0)) < 1e-12
    sizes = g.sizes()
    assert sum(sizes) == 203 and max(sizes) - min(sizes) <= 1


def test_grouped_merge_and_state(rng):
    x, y = rng.standard_normal((60, 3)), rng.standard_normal((40, 3))
    a, b = GroupedStats(4), GroupedStats(4)
    a.update(x)
    b.update(y)
    a.merge(b)
    assert rel_err(a.total().cov, np.cov(np.concatenate([x, y]), rowvar=False)) < 1e-12
    c = GroupedStats.from_state_dict(a.state_dict())
    assert rel_err(c.total().cov, a.total().cov) < 1e-13
    with pytest.raises(FidevalError, match="cannot merge 3 groups into 4"):
        a.merge(GroupedStats(3))


def test_errors_name_the_batch_and_rows(rng):
    s = GaussianStats()
    s.update(rng.standard_normal((10, 3)))
    bad = rng.standard_normal((10, 3))
    bad[4, 0] = np.nan
    bad[7, 2] = np.inf
    with pytest.raises(
        NonFiniteFeaturesError, match=r"batch 1: 2 NaN/Inf .*\(rows 4, 7 .*stream rows 14, 17"
    ):
        s.update(bad)
    with pytest.raises(FidevalError, match="d=4 but the statistics have d=3"):
        s.update(np.zeros((2, 4)))
    with pytest.raises(FidevalError, match="expected a 2-D"):
        s.update(np.zeros(3))
    with pytest.raises(FidevalError, match="at least 2 samples"):
        one = GaussianStats()
        one.update(np.zeros((1, 3)))
        _ = one.cov


def test_grouped_copies_rows_out_of_a_reused_buffer(rng):
    data = rng.standard_normal((10, 100, 4))
    g, buf = GroupedStats(4), np.empty((100, 4))
    for chunk in data:
        buf[:] = chunk  # a loader that refills one preallocated buffer
        g.update(buf)
    flat = data.reshape(-1, 4)
    assert rel_err(g.total().cov, np.cov(flat, rowvar=False)) < 1e-12


def test_grouped_state_keeps_offset(rng):
    x = rng.standard_normal((40, 3))
    a = GroupedStats(4, offset=3)
    a.update(x[:7])
    b = GroupedStats.from_state_dict(a.state_dict())
    b.update(x[7:])
    ref = GroupedStats(4, offset=3)
    ref.update(x)
    assert b.sizes() == ref.sizes()
    for i in range(4):
        assert rel_err(b.group(i).mean, ref.group(i).mean) < 1e-12
