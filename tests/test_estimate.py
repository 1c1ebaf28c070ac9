"""Tests of fideval.estimate: grouped recombination, closed forms, bias, coverage, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats as sstats

from conftest import random_spd
from fideval import FrechetReference, GaussianStats, GroupedStats
from fideval.cli import main as cli_main
from fideval.errors import FidevalError
from fideval.estimate import (
    AdaptiveEstimator,
    FidEstimate,
    adaptive_estimate,
    estimate_fid,
    required_samples,
    t_quantile,
)
from fideval.estimate.bias import jackknife_combos, richardson_combos
from fideval.estimate.subsets import UnionFrechet
from fideval.io.statsfile import save_stats

KEYS = {
    "n", "m", "fid", "fid_ci95", "fid_bias_corrected", "fid_bias_corrected_ci95",
    "fid_infinity", "fid_infinity_ci95", "fid_at_target", "fid_at_target_ci95",
    "target_n", "n_used", "stopped_because", "method",
}  # fmt: skip


def _problem(d: int, seed: int = 0, shift: float = 1.0, spread: float = 0.3):
    """Generated N(μ_g, Σ_g) and an exact reference N(0, Σ_r) (M = ∞)."""
    rng = np.random.default_rng(seed)
    sigma_r = random_spd(rng, d, cond=20.0)
    g = rng.standard_normal((d, d))
    b = np.eye(d) + spread * (g + g.T) / math.sqrt(2 * d)
    sigma_g = b @ sigma_r @ b.T
    mu_g = shift * rng.standard_normal(d) / math.sqrt(d)
    ref = FrechetReference(np.zeros(d), sigma_r)
    return mu_g, np.linalg.cholesky(sigma_g), ref, ref.compare(mu_g, sigma_g).value


def _grouped(x: np.ndarray, k: int = 10, batch: int = 137) -> GroupedStats:
    gs = GroupedStats(k)
    for i in range(0, len(x), batch):
        gs.update(x[i : i + batch])
    return gs


# --------------------------------------------------------------------------- recombination


def test_grouped_statistics_recombine_exactly(rng: np.random.Generator) -> None:
    x = rng.standard_normal((1003, 7)) * 3.0 + 50.0
    gs = _grouped(x, k=10)
    total = gs.total()
    assert total.n == 1003 and sum(gs.sizes()) == 1003
    np.testing.assert_allclose(total.mean, x.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(total.cov, np.cov(x, rowvar=False), rtol=1e-12, atol=1e-12)
    subset = [1, 4, 9]
    rows = np.concatenate([x[g::10] for g in subset])
    merged = gs.merged(subset)
    np.testing.assert_allclose(merged.mean, rows.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(merged.cov, np.cov(rows, rowvar=False), rtol=1e-12, atol=1e-12)


def test_union_fd_matches_kernel(rng: np.random.Generator) -> None:
    d = 12
    mu_g, l_g, ref, _ = _problem(d)
    x = rng.standard_normal((800, d)) @ l_g.T + mu_g
    gs = _grouped(x)
    ev = UnionFrechet(gs, ref)
    for subset in ([0, 1, 2, 3, 4], [3], list(range(10)), [2, 5, 7, 8]):
        rows = np.concatenate([x[g::10] for g in subset])
        exact = ref.compare_features(rows).value
        assert ev.fd(subset).value == pytest.approx(exact, rel=1e-10)
        st = gs.merged(subset)
        assert ev.fd(subset).value == pytest.approx(ref.compare(st.mean, st.cov).value, rel=1e-10)


@pytest.mark.parametrize("m", [None, 40, 5000])
def test_union_assembly_equals_direct_per_subset_fd(m: int | None) -> None:
    """Every union the estimators use, assembled from the K projected groups (sums of
    lower triangles, P_all − Σ_{g∉S} P_g for large unions, rank-one mean corrections),
    equals the kernel on that union's merged statistics to 1e-10 — for a Cholesky
    reference (M = 5000 > d), a low-rank one (M = 40 < d) and M unknown."""
    d, k = 48, 10
    rng = np.random.default_rng(11)
    mix = rng.standard_normal((d, d)) / math.sqrt(d)
    x = np.maximum(rng.standard_normal((1500, d)) @ mix + 0.1, 0.0) + 3.0
    y = np.maximum(rng.standard_normal((m or 300, d)) @ (mix + 0.1) + 0.2, 0.0) + 3.0
    ref = FrechetReference(y.mean(0), np.cov(y, rowvar=False), n=m)
    gs = _grouped(x, k=k)
    ev = UnionFrechet(gs, ref)
    est = estimate_fid(gs, ref)
    subsets = [frozenset(range(k))] + [frozenset(range(k)) - {g} for g in range(k)]
    rng_s = np.random.default_rng(0)
    subsets += [frozenset(rng_s.permutation(k)[:c].tolist()) for c in (1, 2, 5, 7, 9)]
    for subset in subsets:
        st = gs.merged(sorted(subset))
        direct = ref.compare(st.mean, st.cov, n=st.n).value
        assert ev.fd(subset).value == pytest.approx(direct, rel=1e-10), (sorted(subset), m)
    assert est.fid == pytest.approx(ev.fd(frozenset(range(k))).value, rel=1e-12)


def test_reference_may_be_statistics_or_a_record(tmp_path) -> None:
    """estimate_fid accepts GaussianStats and StatsRecord references (factored inside):
    the same estimate as with the FrechetReference built from them."""
    from fideval.io.statsfile import StatsRecord, load_stats

    d = 6
    rng = np.random.default_rng(5)
    y = rng.standard_normal((400, d)) * 1.2
    x = rng.standard_normal((300, d)) + 0.3
    stats = GaussianStats()
    stats.update(y)
    gs = _grouped(x, k=5)
    expected = estimate_fid(gs, FrechetReference(stats.mean, stats.cov, n=stats.n))
    record = load_stats(save_stats(tmp_path / "ref.npz", stats))
    assert isinstance(record, StatsRecord)
    for reference in (stats, record, StatsRecord(stats.mean, stats.cov, None)):
        got = estimate_fid(gs, reference)
        assert got.fid == pytest.approx(expected.fid, rel=1e-12)
        assert got.fid_bias_corrected == pytest.approx(expected.fid_bias_corrected, rel=1e-12)
        assert got.m == getattr(reference, "n", None)
    with pytest.raises(FidevalError, match="expected a FrechetReference, GaussianStats"):
        estimate_fid(gs, np.eye(d))


# --------------------------------------------------------------------------- closed forms


def test_mean_term_bias_is_trace_over_n_monte_carlo() -> None:
    """Through fideval's streams and kernel: E‖x̄ − μ_r‖² = ‖μ_g − μ_r‖² + tr(Σ_g)/N for the
    plain mean term, while the jackknife's mean term has expectation ‖μ_g − μ_r‖² (each
    within 4 SE over 600 streams of N=40, d=5, K=4; the tr Σ/N gap is ≈ 15 SE)."""
    d, n, k, reps = 5, 40, 4, 600
    rng = np.random.default_rng(3)
    sigma = random_spd(rng, d, cond=5.0)
    delta = 0.2 * rng.standard_normal(d)
    l = np.linalg.cholesky(sigma)
    ref = FrechetReference(np.zeros(d), np.eye(d))  # only its mean enters the mean term
    jack, _ = jackknife_combos([n // k] * k)
    plain, corrected = [], []
    for _ in range(reps):
        ev = UnionFrechet(_grouped(delta + rng.standard_normal((n, d)) @ l.T, k=k), ref)
        plain.append(ev.fd(range(k)).mean_term)
        corrected.append(sum(w * ev.fd(s).mean_term for s, w in jack.items()))
    plain, corrected = np.array(plain), np.array(corrected)
    se_plain = plain.std() / math.sqrt(reps)
    se_corr = corrected.std() / math.sqrt(reps)
    bias = np.trace(sigma) / n
    assert abs(plain.mean() - (delta @ delta + bias)) < 4 * se_plain
    assert abs(corrected.mean() - delta @ delta) < 4 * se_corr
    assert bias > 8 * max(se_plain, se_corr)  # the two claims are distinguishable


def test_corrections_of_the_mean_term_are_exactly_unbiased(rng: np.random.Generator) -> None:
    """Through the estimator's own weights: on the mean term ‖x̄ − μ_r‖², Richardson is
    a_A·a_B and the equal-group jackknife is the U-statistic Σ_{g≠h} a_g·a_h/(K(K−1)),
    a_g = x̄_g − μ_r — both exactly unbiased for ‖μ_g − μ_r‖² (no tr Σ/N term)."""
    d, k = 6, 8
    mu_g, l_g, ref, _ = _problem(d)
    x = rng.standard_normal((800, d)) @ l_g.T + mu_g
    gs = _grouped(x, k=k)
    ev = UnionFrechet(gs, ref)
    sizes = gs.sizes()
    a = np.stack([x[g::k].mean(0) for g in range(k)])  # μ_r = 0

    def mean_term(combo):
        return sum(w * ev.fd(s).mean_term for s, w in combo.items())

    jack, _ = jackknife_combos(sizes)
    gram = a @ a.T
    u_stat = (gram.sum() - np.trace(gram)) / (k * (k - 1))
    assert mean_term(jack) == pytest.approx(u_stat, rel=1e-9)
    order = list(range(k))
    rich, _ = richardson_combos(sizes, [order])
    a_half = a[: k // 2].mean(0)
    b_half = a[k // 2 :].mean(0)
    assert mean_term(rich) == pytest.approx(a_half @ b_half, rel=1e-9)


# --------------------------------------------------------------------------- bias


def test_bias_corrected_estimators_land_near_the_exact_fid_infinity() -> None:
    """Exact reference (M = ∞), Gaussian features, d=40 at N=600 (bias-dominated).

    Averaged over 16 seeds, plain FD_N is biased by ≈ +30% of FID∞; each corrected
    estimator must remove at least 70% of that bias.
    """
    d, n = 40, 600
    mu_g, l_g, ref, fd_inf = _problem(d, seed=1, shift=0.5, spread=0.2)
    plain, corrected = [], {"jackknife": [], "richardson": [], "chong-forsyth": []}
    for seed in range(16):
        rng = np.random.default_rng(100 + seed)
        x = rng.standard_normal((n, d)) @ l_g.T + mu_g
        est = estimate_fid(_grouped(x), ref, target_n=50_000, seed=seed)
        plain.append(est.fid)
        for name in corrected:
            corrected[name].append(est.details[name]["fid_infinity"])
    plain_bias = np.mean(plain) - fd_inf
    assert plain_bias > 0.2 * fd_inf
    for name, vals in corrected.items():
        assert abs(np.mean(vals) - fd_inf) < 0.3 * plain_bias, name


# --------------------------------------------------------------------------- intervals


def test_t_quantile_matches_scipy() -> None:
    for df in (1, 4, 9, 29):
        assert t_quantile(0.95, df) == pytest.approx(sstats.t.ppf(0.975, df), rel=1e-9)


@pytest.mark.slow
def test_interval_coverage_small_monte_carlo() -> None:
    """Coverage of the 95% intervals over 200 streams at d=4, N=2000 (K=10)."""
    d, n, reps = 4, 2000, 200
    mu_g, l_g, ref, fd_inf = _problem(d, seed=5, shift=1.5, spread=0.4)
    fids, fid_cis, bc_cis, inf_cis = [], [], [], []
    rng = np.random.default_rng(2024)
    for rep in range(reps):
        x = rng.standard_normal((n, d)) @ l_g.T + mu_g
        est = estimate_fid(_grouped(x, batch=n), ref, orders=1, seed=rep)
        assert est.valid, est.warnings
        fids.append(est.fid)
        fid_cis.append(est.fid_ci95)
        bc_cis.append(est.fid_bias_corrected_ci95)
        inf_cis.append(est.fid_infinity_ci95)
    e_fd = float(np.mean(fids))  # E[FD_N]; its own SE is ~1/14 of one interval's SE

    def coverage(cis, truth):
        return np.mean([lo <= truth <= hi for lo, hi in cis])

    for cis, truth in ((fid_cis, e_fd), (bc_cis, fd_inf), (inf_cis, fd_inf)):
        assert 0.88 <= coverage(cis, truth) <= 0.995


# --------------------------------------------------------------------------- API behaviour


def test_deterministic_with_seed_and_dict_keys(rng: np.random.Generator) -> None:
    d = 8
    mu_g, l_g, ref, _ = _problem(d)
    x = rng.standard_normal((1000, d)) @ l_g.T + mu_g
    a = estimate_fid(_grouped(x), ref, seed=7).to_dict()
    b = estimate_fid(_grouped(x, batch=1000), ref, seed=7).to_dict()
    assert json.dumps(a) == json.dumps(b)
    c = estimate_fid(_grouped(x), ref, seed=8).to_dict()
    assert c["fid"] == a["fid"] and c["fid_infinity"] != a["fid_infinity"]
    assert KEYS <= set(a)
    assert a["m"] is None and a["n"] == 1000 and a["target_n"] == 50_000
    for key in KEYS:
        if key.endswith("_ci95"):
            assert len(a[key]) == 2 and a[key][0] < a[key][1]


def test_reference_m_is_reported(rng: np.random.Generator) -> None:
    d = 5
    mu_g, l_g, ref, _ = _problem(d)
    ref_m = FrechetReference(ref.mu, ref.sigma, n=12_345)
    x = rng.standard_normal((500, d)) @ l_g.T + mu_g
    assert estimate_fid(_grouped(x), ref_m).m == 12_345


def test_too_short_stream_says_how_many_samples(rng: np.random.Generator) -> None:
    _, _, ref, _ = _problem(4)
    gs = GroupedStats(10)
    gs.update(rng.standard_normal((13, 4)))
    with pytest.raises(FidevalError, match="need at least 20"):
        estimate_fid(gs, ref)
    assert required_samples(10) == 20
    with pytest.raises(FidevalError, match="at least 4 groups"):
        estimate_fid(_grouped(rng.standard_normal((100, 4)), k=3), ref)
    with pytest.raises(FidevalError, match="dimension mismatch"):
        estimate_fid(_grouped(rng.standard_normal((100, 5))), ref)
    with pytest.raises(FidevalError, match="tolerance"):
        AdaptiveEstimator(ref, 0.0)


def test_invalid_cases_are_flagged(rng: np.random.Generator) -> None:
    d = 30
    mu_g, l_g, ref, _ = _problem(d)
    x = rng.standard_normal((24, d)) @ l_g.T + mu_g  # N ≤ d
    est = estimate_fid(_grouped(x, k=4), ref)
    assert not est.valid
    assert any("N=24 ≤ d=30" in w for w in est.warnings)
    assert any("K=4 groups" in w for w in est.warnings)
    # generated == reference: the distributions coincide
    same = rng.standard_normal((2000, d)) @ np.linalg.cholesky(ref.sigma.numpy()).T
    est = estimate_fid(_grouped(same), ref)
    assert not est.valid and any("nearly coincide" in w for w in est.warnings)


def test_adaptive_stops_at_tolerance_and_budget() -> None:
    d = 6
    mu_g, l_g, ref, _ = _problem(d, shift=2.0)
    rng = np.random.default_rng(0)

    def sampler(b: int) -> np.ndarray:
        return rng.standard_normal((b, d)) @ l_g.T + mu_g

    loose = adaptive_estimate(sampler, ref, tolerance=0.5, progress=False, max_samples=20_000)
    assert isinstance(loose, FidEstimate)
    assert loose.stopped_because == "tolerance reached"
    assert loose.half_width("fid_at_target") <= 0.5 and loose.n_used <= 20_000
    tight = adaptive_estimate(sampler, ref, tolerance=1e-4, progress=False, max_samples=4000)
    assert tight.stopped_because == "max_samples reached" and tight.n_used == 4000
    data = iter([sampler(500) for _ in range(5)])
    short = adaptive_estimate(
        lambda b: next(data, np.zeros((0, d))), ref, tolerance=1e-4, progress=False
    )
    assert short.stopped_because == "stream exhausted" and short.n_used == 2500


def test_incremental_adaptive_estimator() -> None:
    d = 6
    mu_g, l_g, ref, _ = _problem(d, shift=2.0)
    rng = np.random.default_rng(1)
    est = AdaptiveEstimator(ref, tolerance=0.3, batch_size=250, max_samples=30_000)
    while not est.done:
        est.update(torch.from_numpy(rng.standard_normal((250, d)) @ l_g.T + mu_g))
    res = est.estimate()
    assert est.stopped_because == res.stopped_because == "tolerance reached"
    assert res.n_used == est.n and len(est.history) >= 1


# --------------------------------------------------------------------------- CLI


def _files(tmp_path, rng, n=3000, d=6):
    mu_g, l_g, ref, _ = _problem(d, shift=2.0)
    feats = (rng.standard_normal((n, d)) @ l_g.T + mu_g).astype(np.float32)
    fpath = tmp_path / "feats.npy"
    np.save(fpath, feats)
    rpath = save_stats(
        tmp_path / "ref.npz", GaussianStats.from_moments(50_000, ref.mu.numpy(), ref.sigma.numpy())
    )
    return str(fpath), str(rpath)


def test_cli_json_and_table(tmp_path, rng, capsys) -> None:
    f, r = _files(tmp_path, rng)
    assert cli_main(["estimate", f, r, "--json", "--seed", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert KEYS <= set(out)
    assert out["n"] == 3000 and out["m"] == 50_000 and out["n_used"] == 3000
    assert out["stopped_because"] == "stream end"
    assert cli_main(["estimate", f, r, "--groups", "8"]) == 0
    text = capsys.readouterr().out
    assert "FID at N=50000" in text and "95% interval" in text


def test_cli_tolerance_simulates_a_sampler(tmp_path, rng, capsys) -> None:
    f, r = _files(tmp_path, rng, n=6000)
    args = ["estimate", f, r, "--json", "--tolerance", "1e-6", "--max-samples", "4000"]
    assert cli_main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_used"] == 4000 and out["stopped_because"] == "max_samples reached"
    assert cli_main(["estimate", f, r, "--json", "--tolerance", "5", "--batch-size", "250"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stopped_because"] == "tolerance reached" and out["n_used"] == 2000


def test_cli_too_short_is_a_user_error(tmp_path, rng, capsys) -> None:
    f, r = _files(tmp_path, rng, n=15)
    assert cli_main(["estimate", f, r]) == 2
    assert "need at least 20" in capsys.readouterr().err
