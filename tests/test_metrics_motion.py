"""Motion suite: against a naive per-block implementation of the protocol, invariants, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fideval.errors import FidevalError, NonFiniteFeaturesError
from fideval.metrics import (
    diversity,
    motion_fid,
    motion_suite,
    multimodality,
    text_motion_matching,
)
from fideval.metrics.replicate import replicate


def naive_matching(t, m, pool, top_k):
    hits = np.zeros(top_k)
    dist_sum, seen = 0.0, 0
    for b in range(len(t) // pool):
        tb, mb = t[b * pool : (b + 1) * pool], m[b * pool : (b + 1) * pool]
        d = np.sqrt(((tb[:, None] - mb[None]) ** 2).sum(-1))
        order = np.argsort(d, axis=1, kind="stable")
        for i in range(pool):
            pos = int(np.nonzero(order[i] == i)[0][0])
            hits += np.arange(top_k) >= pos
        dist_sum += np.trace(d)
        seen += pool
    return hits / seen, dist_sum / seen


@pytest.fixture
def emb():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(200, 16))
    t = m + rng.normal(size=m.shape) * 1.2  # noisy pairing: R-precision strictly between 0 and 1
    gt = rng.normal(size=(300, 16)) + 0.1
    return t, m, gt


@pytest.mark.parametrize("pool", [32, 7, 200])
def test_matching_matches_naive(emb, pool):
    t, m, _ = emb
    res = text_motion_matching(t, m, pool=pool, top_k=3)
    rp, ms = naive_matching(t, m, pool, 3)
    np.testing.assert_allclose(res.r_precision, rp, rtol=0, atol=1e-15)
    assert res.matching_score == pytest.approx(ms, rel=1e-12)
    assert res.n_used == (200 // pool) * pool  # incomplete last block dropped
    assert 0 < res.r_precision[0] <= res.r_precision[1] <= res.r_precision[2] <= 1


def test_perfect_match(emb):
    _, m, _ = emb
    res = text_motion_matching(m, m.copy(), pool=32)
    np.testing.assert_array_equal(res.r_precision, [1.0, 1.0, 1.0])
    assert res.matching_score == 0.0


def test_ties_rank_lower_index_first():
    m = np.zeros((4, 2))
    m[3] = [5.0, 0.0]
    t = np.zeros((4, 2))  # texts 0..2 are at the same distance (0) from motions 0..2
    res = text_motion_matching(t, m, pool=4, top_k=3)
    # text 0 → rank 0, text 1 → rank 1, text 2 → rank 2, text 3 → rank 3 (its motion is farthest)
    np.testing.assert_allclose(res.r_precision, [0.25, 0.5, 0.75])


def test_shuffle_seeded(emb):
    t, m, _ = emb
    a = text_motion_matching(t, m, pool=32, shuffle=True, seed=1)
    b = text_motion_matching(t, m, pool=32, shuffle=True, seed=1)
    c = text_motion_matching(t, m, pool=32, shuffle=True, seed=2)
    np.testing.assert_array_equal(a.r_precision, b.r_precision)
    assert a.matching_score == b.matching_score
    assert not np.array_equal(a.r_precision, c.r_precision) or a.matching_score != c.matching_score


def test_diversity_and_multimodality_match_naive(emb):
    _, m, _ = emb
    rng = np.random.default_rng(5)
    a, b = rng.choice(200, 50, replace=False), rng.choice(200, 50, replace=False)
    ref = np.linalg.norm(m[a] - m[b], axis=1).mean()
    assert diversity(m, times=50, seed=5) == pytest.approx(ref, rel=1e-12)

    mm = np.random.default_rng(9).normal(size=(6, 15, 16))
    rng = np.random.default_rng(4)
    a, b = rng.choice(15, 10, replace=False), rng.choice(15, 10, replace=False)
    ref = np.linalg.norm(mm[:, a] - mm[:, b], axis=2).mean()
    assert multimodality(mm, times=10, seed=4) == pytest.approx(ref, rel=1e-12)


def test_fid_at_protocol_size():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 512))
    g = rng.normal(size=(1100, 512)) * 1.05 + 0.05
    fid = motion_fid(x, g)
    mu1, mu2 = x.mean(0), g.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(g, rowvar=False)
    ev = np.linalg.eigvals(s1 @ s2)
    ref = (
        ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(ev.real.clip(0)).sum()
    )
    assert np.isfinite(fid)
    assert fid == pytest.approx(ref, rel=1e-6)


def test_suite_keys_and_determinism(emb):
    t, m, gt = emb
    mm = np.random.default_rng(1).normal(size=(5, 12, 16))
    a = motion_suite(t, m, gt, mm, diversity_times=100, mm_times=10, seed=3)
    b = motion_suite(t, m, gt, mm, diversity_times=100, mm_times=10, seed=3)
    assert a == b
    assert set(a) == {
        "r_precision",
        "matching_score",
        "fid",
        "diversity",
        "multimodality",
        "warnings",
    }
    assert len(a["r_precision"]) == 3
    assert "multimodality" not in motion_suite(t, m, gt, diversity_times=100)
    # turning on the shuffle does not move the Diversity draw
    c = motion_suite(t, m, gt, mm, diversity_times=100, mm_times=10, seed=3, shuffle=True)
    assert c["diversity"] == a["diversity"]


def test_suite_passes_fid_warnings_through():
    """256 generated motions in d = 512: the FID is rank-deficient, and the suite says so."""
    rng = np.random.default_rng(5)
    t, m = rng.normal(size=(256, 512)), rng.normal(size=(256, 512))
    gt = rng.normal(size=(600, 512))
    out = motion_suite(t, m, gt, diversity_times=100)
    assert any(w.startswith("FID: N=256 ≤ d=512 on side 1") for w in out["warnings"])
    assert motion_suite(t[:64, :16], m[:64, :16], gt[:, :16], diversity_times=30)["warnings"] == []
    # replicate() summarises the metrics and leaves the words alone
    summary = replicate(lambda i, r: motion_suite(t, m, gt, diversity_times=100, seed=i), 2)
    assert "warnings" not in summary and "fid" in summary


def test_errors(emb):
    t, m, gt = emb
    with pytest.raises(FidevalError, match="200 rows but motion has 199"):
        text_motion_matching(t, m[:199])
    with pytest.raises(FidevalError, match="fewer than one pool of 32"):
        text_motion_matching(t[:20], m[:20])
    with pytest.raises(
        FidevalError, match=r"200 rows; Diversity with 300 pairs needs more than 300"
    ):
        diversity(m, times=300)
    with pytest.raises(FidevalError, match="10 repeats per text; MultiModality with 10 pairs"):
        multimodality(np.zeros((3, 10, 4)), times=10)
    with pytest.raises(FidevalError, match=r"d=16.*d=8"):
        motion_fid(m, gt[:, :8])
    bad = m.copy()
    bad[42, 0] = np.nan
    with pytest.raises(
        NonFiniteFeaturesError, match=r"motion: 1 NaN/Inf value\(s\) in 1 row\(s\) \(rows 42\)"
    ):
        motion_suite(t, bad, gt, diversity_times=100)
