"""Paired checkpoint comparisons: influence values, compare_features, the adaptive variance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fideval.errors import FidevalError
from fideval.estimate import AdaptiveEstimator
from fideval.frechet import FrechetReference, frechet_details, frechet_from_features
from fideval.io.statsfile import StatsRecord
from fideval.metrics.compare import Comparison, compare_features, compare_influence
from fideval.metrics.influence import FrechetInfluence, gaussian_roots, roots_from_features
from fideval.stats import GaussianStats
from fideval.train import EveryNSteps, FIDEvaluator, read_jsonl
from fideval.train.demo_diffusion import TinyDiffusion
from fideval.train.samplers import SampleNoise, as_paired_sampler, sample_seeds


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a shared 2-core machine two threads spin-wait (50× slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _spd(rng: np.random.Generator, d: int, floor: float = 0.1) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + floor * np.eye(d)


def _stats(x: np.ndarray) -> GaussianStats:
    s = GaussianStats()
    s.update(x)
    return s


# --------------------------------------------------------------------------- influence


def _perturbed_fd(mu_g, sg, mu_r, sr, x, eps, side):
    """FD after moving the generated (or reference) distribution towards δ_x by ε:
    μ_ε = μ + ε(x − μ), Σ_ε = (1 − ε)Σ + ε(1 − ε)(x − μ)(x − μ)ᵀ."""
    if side == "g":
        z = x - mu_g
        return frechet_details(
            mu_g + eps * z, (1 - eps) * sg + eps * (1 - eps) * np.outer(z, z), mu_r, sr
        ).value
    z = x - mu_r
    return frechet_details(
        mu_g, sg, mu_r + eps * z, (1 - eps) * sr + eps * (1 - eps) * np.outer(z, z)
    ).value


def test_influence_is_the_derivative_of_fd():
    """IF(x) = d/dε FD((1 − ε)P + εδ_x) at ε = 0, both sides (central differences)."""
    rng = np.random.default_rng(0)
    d = 5
    sg, sr = _spd(rng, d), _spd(rng, d)
    mu_g, mu_r = rng.normal(size=d), rng.normal(size=d)
    inf = FrechetInfluence(gaussian_roots(mu_g, sg), gaussian_roots(mu_r, sr))
    xs = 2.0 * rng.normal(size=(4, d))
    ifg, ifr = inf.generated(xs), inf.reference(xs)
    eps = 1e-5
    for i, x in enumerate(xs):
        for side, got in (("g", ifg[i]), ("r", ifr[i])):
            hi = _perturbed_fd(mu_g, sg, mu_r, sr, x, eps, side)
            lo = _perturbed_fd(mu_g, sg, mu_r, sr, x, -eps, side)
            assert got == pytest.approx((hi - lo) / (2 * eps), rel=1e-5, abs=1e-6)


def test_transport_map_and_fd_from_the_roots():
    rng = np.random.default_rng(1)
    d = 6
    sg, sr = _spd(rng, d), _spd(rng, d)
    mu_g, mu_r = rng.normal(size=d), rng.normal(size=d)
    inf = FrechetInfluence(gaussian_roots(mu_g, sg), gaussian_roots(mu_r, sr))
    t = inf.transport_map().numpy()
    np.testing.assert_allclose(t, t.T, atol=1e-10)
    np.testing.assert_allclose(t @ sg @ t, sr, rtol=1e-8, atol=1e-10)
    assert np.linalg.eigvalsh(t).min() > 0
    assert inf.value == pytest.approx(frechet_details(mu_g, sg, mu_r, sr).value, rel=1e-10)
    # The Gaussian variance of IF_g in closed form: 4ΔμᵀΣΔμ + 2 tr(((I − T)Σ)²).
    x = rng.multivariate_normal(mu_g, sg, size=200_000)
    a = (np.eye(d) - t) @ sg
    delta = mu_g - mu_r
    closed = 4 * delta @ sg @ delta + 2 * np.trace(a @ a)
    assert np.var(inf.generated(x)) == pytest.approx(closed, rel=0.03)
    assert abs(np.mean(inf.generated(x))) < 0.02 * math.sqrt(closed)


def test_singular_generated_covariance_is_handled():
    """Features in a 3-d subspace of d = 6 (and N < d): finite values, the derivative
    along the subspace, and clamped eigenvalues reported."""
    rng = np.random.default_rng(2)
    d = 6
    basis = np.linalg.qr(rng.normal(size=(d, 3)))[0]
    x = rng.normal(size=(500, 3)) @ basis.T + 0.3
    sr, mu_r = _spd(rng, d), rng.normal(size=d)
    g = roots_from_features(x)
    assert g.rank == 3 and g.clamped == 3
    inf = FrechetInfluence(g, gaussian_roots(mu_r, sr))
    assert any("treated as zero" in w for w in inf.warnings)
    vals = inf.generated(x[:5])
    assert np.isfinite(vals).all()
    mu_g, sg = x.mean(0), np.cov(x, rowvar=False)
    eps = 1e-6
    for i in range(5):
        hi = _perturbed_fd(mu_g, sg, mu_r, sr, x[i], eps, "g")
        lo = _perturbed_fd(mu_g, sg, mu_r, sr, x[i], -eps, "g")
        assert vals[i] == pytest.approx((hi - lo) / (2 * eps), rel=1e-4, abs=1e-5)
    few = roots_from_features(x[:4])  # N = 4 ≤ d: rank 3 at most
    assert np.isfinite(FrechetInfluence(few, gaussian_roots(mu_r, sr)).generated(x[:4])).all()


# --------------------------------------------------------------------------- compare


def _pair(rng, n, d=4, shift=0.05, mix=0.1):
    """Two 'checkpoints' driven by the same noise z: x_a = A z + μ_a, x_b = B z + μ_b."""
    a = np.eye(d) + 0.3 * rng.normal(size=(d, d))
    b = a + mix * rng.normal(size=(d, d))
    mu_a = np.full(d, 0.5)
    mu_b = mu_a - shift
    z = rng.normal(size=(n, d))
    return z @ a.T + mu_a, z @ b.T + mu_b, (a, b, mu_a, mu_b)


def test_point_values_are_fidevals_kernel():
    rng = np.random.default_rng(3)
    xa, xb, _ = _pair(rng, 300)
    ref = rng.normal(size=(700, 4))
    c = compare_features(xa, xb, ref)
    assert c.fid_a == frechet_from_features(xa, ref).value
    assert c.fid_b == frechet_from_features(xb, ref).value
    st = _stats(ref)
    c = compare_features(xa, xb, st)
    sa = _stats(xa)
    want = frechet_details(sa.mean, sa.cov, st.mean, st.cov, n1=300, n2=700).value
    assert c.fid_a == pytest.approx(want, rel=1e-12)
    assert c.difference == pytest.approx(c.fid_a - c.fid_b, abs=1e-15)
    rec = StatsRecord(st.mean, st.cov, st.n)
    assert compare_features(xa, xb, rec).difference == pytest.approx(c.difference, rel=1e-12)


def test_fid_values_equal_fideval_fid():
    import fideval

    rng = np.random.default_rng(4)
    xa, xb, _ = _pair(rng, 300)
    ref = rng.normal(size=(500, 4))
    c = compare_features(xa, xb, ref)
    assert c.fid_a == pytest.approx(fideval.fid(xa, ref).value, rel=1e-12)
    assert c.fid_b == pytest.approx(fideval.fid(xb, ref).value, rel=1e-12)


@pytest.mark.parametrize("paired", [True, False])
def test_interval_agrees_with_a_brute_force_bootstrap(paired):
    """SE and the interval's ends agree with a bootstrap that recomputes both FIDs
    (rows resampled together when paired, separately when not); reference fixed."""
    rng = np.random.default_rng(5 + paired)
    n = 400
    xa, xb, _ = _pair(rng, n)
    st = _stats(rng.normal(size=(3000, 4)))
    kernel = FrechetReference(st.mean, st.cov, n=st.n)
    c = compare_features(xa, xb, st, paired=paired)
    boot = []
    for _ in range(800):
        ia = rng.integers(0, n, n)
        ib = ia if paired else rng.integers(0, n, n)
        fa = kernel.compare(xa[ia].mean(0), np.cov(xa[ia], rowvar=False), n=n).value
        fb = kernel.compare(xb[ib].mean(0), np.cov(xb[ib], rowvar=False), n=n).value
        boot.append(fa - fb)
    sd = np.std(boot, ddof=1)
    assert c.se == pytest.approx(sd, rel=0.12)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert c.ci95[0] == pytest.approx(lo, abs=0.25 * c.half_width)
    assert c.ci95[1] == pytest.approx(hi, abs=0.25 * c.half_width)


def test_paired_is_narrower_when_checkpoints_share_noise():
    rng = np.random.default_rng(7)
    xa, xb, _ = _pair(rng, 1000, mix=0.05)
    st = _stats(rng.normal(size=(2000, 4)))
    paired = compare_features(xa, xb, st)
    unpaired = compare_features(xa, xb, st, paired=False)
    assert paired.correlation is not None and paired.correlation > 0.9
    assert unpaired.half_width > 3 * paired.half_width
    assert paired.df == 999


def _coverage(paired: bool, reference_features: bool, reps: int = 300) -> float:
    """Fraction of repetitions whose interval holds FD(a, r) − FD(b, r) in closed form."""
    rng = np.random.default_rng(11)
    d, n, m = 3, 1500, 1500
    a = np.eye(d) + 0.3 * rng.normal(size=(d, d))
    b = a + 0.15 * rng.normal(size=(d, d))
    mu_a, mu_b = np.full(d, 0.4), np.full(d, 0.3)
    lr = np.eye(d) + 0.2 * rng.normal(size=(d, d))
    mu_r, sr = np.zeros(d), lr @ lr.T
    truth = (
        frechet_details(mu_a, a @ a.T, mu_r, sr).value
        - frechet_details(mu_b, b @ b.T, mu_r, sr).value
    )
    exact = StatsRecord(mu_r, sr, None)
    hits = 0
    for _ in range(reps):
        z = rng.normal(size=(n, d))
        zb = z if paired else rng.normal(size=(n, d))
        ref = rng.normal(size=(m, d)) @ lr.T if reference_features else exact
        c = compare_features(z @ a.T + mu_a, zb @ b.T + mu_b, ref, paired=paired)
        hits += c.ci95[0] <= truth <= c.ci95[1]
    return hits / reps


@pytest.mark.parametrize(
    ("paired", "reference_features"), [(True, False), (False, False), (True, True)]
)
def test_coverage_on_gaussians_with_a_closed_form_truth(paired, reference_features):
    """300 repetitions: 95% nominal; a binomial 300 draw is ≥ 0.91 with probability ≈ 0.999."""
    cov = _coverage(paired, reference_features)
    assert 0.91 <= cov <= 0.99


def test_reference_noise_enters_only_with_reference_features():
    rng = np.random.default_rng(8)
    xa, xb, _ = _pair(rng, 500, shift=0.3, mix=0.3)
    ref = rng.normal(size=(400, 4))
    with_ref = compare_features(xa, xb, ref)
    as_stats = compare_features(xa, xb, _stats(ref))
    assert with_ref.se_reference is not None and with_ref.se_reference > 0
    assert with_ref.se == pytest.approx(math.hypot(as_stats.se, with_ref.se_reference), rel=1e-6)
    assert as_stats.se_reference is None
    assert any("reference given as statistics (M=400)" in w for w in as_stats.warnings)
    assert not any("reference given as statistics" in w for w in with_ref.warnings)


def test_p_value_and_interval_agree():
    rng = np.random.default_rng(9)
    for shift in (0.0, 0.02, 0.05, 0.2):
        xa, xb, _ = _pair(rng, 300, shift=shift)
        c = compare_features(xa, xb, _stats(rng.normal(size=(500, 4))))
        assert 0.0 <= c.p_value <= 1.0
        assert (c.p_value < 0.05) == c.significant


def test_identical_sets_give_a_zero_difference():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(200, 3))
    c = compare_features(x, x.copy(), _stats(rng.normal(size=(300, 3))))
    assert c.difference == 0.0 and c.ci95 == (0.0, 0.0) and c.p_value == 1.0


def test_errors_are_exact():
    rng = np.random.default_rng(12)
    x, ref = rng.normal(size=(100, 3)), rng.normal(size=(100, 3))
    with pytest.raises(FidevalError) as err:
        compare_features(x, x[:90], ref)
    assert str(err.value) == (
        "paired comparison: feats_a has N=100 rows and feats_b has N=90; row i of each must "
        "come from the same noise, so both need the same N (pass paired=False for "
        "independent samples)"
    )
    assert compare_features(x, x[:90], ref, paired=False).n_b == 90
    with pytest.raises(
        FidevalError, match=r"^dimension mismatch: feats_a has d=3, feats_b has d=4$"
    ):
        compare_features(x, rng.normal(size=(100, 4)), ref)
    with pytest.raises(
        FidevalError, match=r"^dimension mismatch: features have d=3, reference d=5$"
    ):
        compare_features(x, x, _stats(rng.normal(size=(50, 5))))
    with pytest.raises(FidevalError, match="reference: expected features"):
        compare_features(x, x, [1, 2, 3])


def test_to_dict_is_json_ready():
    import json

    rng = np.random.default_rng(13)
    xa, xb, _ = _pair(rng, 200)
    d = compare_features(torch.from_numpy(xa), torch.from_numpy(xb), rng.normal(size=(300, 4)))
    out = json.loads(json.dumps(d.to_dict()))
    for key in ("fid_a", "fid_b", "difference", "ci95", "p_value", "n", "paired", "warnings"):
        assert key in out
    assert isinstance(d, Comparison) and len(out["ci95"]) == 2


def test_unequal_paired_prefix_reduces_to_the_paired_formula():
    """compare_influence with N_a ≠ N_b pairs the common prefix; with equal N it is the
    paired-t variance, and with no correlation it is the unpaired one."""
    rng = np.random.default_rng(14)
    a = rng.normal(size=1000)
    b = a + 0.1 * rng.normal(size=1000)
    eq = compare_influence(a, b, 1.0, 0.9, paired=True)
    assert eq.se == pytest.approx(np.std(a - b, ddof=1) / math.sqrt(1000), rel=1e-12)
    longer = compare_influence(a, np.concatenate([b, rng.normal(size=1000)]), 1.0, 0.9, paired=True)
    assert eq.se < longer.se < compare_influence(a, b, 1.0, 0.9, paired=False).se * 1.01
    assert any("paired on the first 1000 samples" in w for w in longer.warnings)


# --------------------------------------------------------------------------- adaptive


def _adaptive_runs(variance: str, runs: int) -> tuple[list[int], int]:
    rng = np.random.default_rng(20)
    d = 4
    lg = np.eye(d) + 0.4 * rng.normal(size=(d, d))
    mu = np.full(d, 0.6)
    ref = FrechetReference(np.zeros(d), np.eye(d))
    truth = frechet_details(mu, lg @ lg.T, np.zeros(d), np.eye(d)).value
    used, hits = [], 0
    for run in range(runs):
        r = np.random.default_rng(1000 + run)
        est = AdaptiveEstimator(
            ref, 0.05, max_samples=60_000, batch_size=500, variance=variance, target_n=10**9
        )
        while not est.done:
            est.update(r.normal(size=(500, d)) @ lg.T + mu)
        res = est.estimate()
        used.append(res.n_used)
        hits += res.fid_at_target_ci95[0] <= truth <= res.fid_at_target_ci95[1]
    return used, hits


def test_adaptive_influence_variance_steadies_the_stopping_point():
    """Same streams, same tolerance: the per-sample variance stops at a steadier n
    (smaller spread of log n) and still covers the closed-form FD∞ (target_n → ∞)."""
    old, _ = _adaptive_runs("groups", 25)
    new, hits = _adaptive_runs("influence", 25)
    assert np.std(np.log(new)) < 0.6 * np.std(np.log(old))
    assert hits >= 21


def test_adaptive_influence_variance_matches_the_analytic_influence():
    rng = np.random.default_rng(21)
    d = 3
    x = rng.normal(size=(4000, d)) * [1.0, 2.0, 0.5] + 0.3
    ref = FrechetReference(np.zeros(d), np.eye(d))
    est = AdaptiveEstimator(ref, 1e-9, max_samples=4000, variance_rows=3000)
    est.update(x)
    res = est.estimate()
    st = _stats(x)
    inf = FrechetInfluence(gaussian_roots(st.mean, st.cov), gaussian_roots(np.zeros(d), np.eye(d)))
    assert res.details["sigma2_if"] == pytest.approx(np.var(inf.generated(x[:3000]), ddof=1))
    assert "sigma2_if_groups" in res.details
    half = res.half_width("fid")
    assert half == pytest.approx(
        res.details["t_quantile"] * math.sqrt(res.details["sigma2_if"] / 4000), rel=1e-6
    )
    with pytest.raises(FidevalError, match="variance='bogus'"):
        AdaptiveEstimator(ref, 1.0, variance="bogus")


# --------------------------------------------------------------------------- evaluator


class _Extractor(nn.Module):
    """Images (B, 1, 4, 4) → 3-d features (a fixed random projection through tanh)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = nn.Linear(16, 3)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(3, 16, generator=g))
            self.proj.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(x.flatten(1)))

    def provenance(self) -> dict:
        return {"extractor": "cmp-tiny", "weights_sha256": "0", "dims": 3, "profile": "unit"}


class _NoiseModel(nn.Module):
    """A 'checkpoint' sigmoid(scale·z): the scale is the model, z the per-sample noise."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def sample(self, batch_size: int, noise: SampleNoise | None = None) -> torch.Tensor:
        z = noise.randn(1, 4, 4) if noise is not None else torch.randn(batch_size, 1, 4, 4)
        return torch.sigmoid(self.scale * z)


@pytest.fixture
def real() -> torch.Tensor:
    return torch.rand(300, 1, 4, 4, generator=torch.Generator().manual_seed(1))


def _evaluator(real, tmp_path, model, **kw) -> FIDEvaluator:
    options = dict(
        schedule=EveryNSteps(1, n=400),
        batch_size=50,
        groups=4,
        cache_dir=tmp_path / "cache",
        log=lambda m: None,
        paired=True,
    )
    options.update(kw)
    return FIDEvaluator(model, real, _Extractor(), **options)


def test_sample_noise_depends_on_the_index_only():
    whole = SampleNoise(7, 0, 10).randn(3)
    split = torch.cat([SampleNoise(7, 0, 4).randn(3), SampleNoise(7, 4, 6).randn(3)])
    assert torch.equal(whole, split)
    noise = SampleNoise(7, 3, 2)
    first, second = noise.randn(3), noise.randn(3)  # each stream continues
    assert not torch.equal(first, second)
    assert torch.equal(first, whole[3:5])
    seeds = sample_seeds(7, 0, 1000)
    assert len(set(seeds)) == 1000 and all(0 <= s < 2**63 for s in seeds)
    assert sample_seeds(8, 0, 5) != sample_seeds(7, 0, 5)
    assert sample_seeds(7, 500, 3) == seeds[500:503]


def test_tiny_diffusion_takes_per_sample_noise():
    model = TinyDiffusion(sampling_steps=4)
    draw = as_paired_sampler(model)
    whole = draw(6, SampleNoise(3, 0, 6))
    split = torch.cat([draw(2, SampleNoise(3, 0, 2)), draw(4, SampleNoise(3, 2, 4))])
    assert torch.equal(whole, split)
    assert not torch.equal(whole, draw(6, SampleNoise(4, 0, 6)))


def test_gaussian_diffusion_takes_per_sample_noise():
    ddp = pytest.importorskip("denoising_diffusion_pytorch")
    import denoising_diffusion_pytorch.denoising_diffusion_pytorch as module

    for sampling_timesteps in (None, 4):  # DDPM loop, DDIM loop
        torch.manual_seed(0)
        unet = ddp.Unet(dim=8, dim_mults=(1, 2), channels=1)
        gd = ddp.GaussianDiffusion(
            unet, image_size=8, timesteps=8, sampling_timesteps=sampling_timesteps
        ).eval()
        draw = as_paired_sampler(gd)
        whole = draw(6, SampleNoise(3, 0, 6))
        split = torch.cat([draw(2, SampleNoise(3, 0, 2)), draw(4, SampleNoise(3, 2, 4))])
        torch.testing.assert_close(whole, split, atol=1e-5, rtol=0)
        assert (whole - draw(6, SampleNoise(4, 0, 6))).abs().max() > 0.1
        assert module.torch is torch  # the module's binding is restored


def test_paired_evaluation_is_independent_of_batch_size_and_step(real, tmp_path):
    model = _NoiseModel(1.5)
    a = _evaluator(real, tmp_path, model, batch_size=50).evaluate(10, n=400)
    b = _evaluator(real, tmp_path, model, batch_size=30).evaluate(999, n=400)
    assert a.fid_plain == pytest.approx(b.fid_plain, rel=1e-10)
    assert a.seed == b.seed == 0 and a.paired


def test_paired_records_compare_with_previous_and_best(real, tmp_path):
    """scale 1.5 is the closest to uniform images; equal models give a zero difference;
    each record's comparison equals compare_features on the same features."""
    model = _NoiseModel(1.0)
    logs: list[str] = []
    ev = _evaluator(real, tmp_path, model, log=logs.append, log_path=tmp_path / "log.jsonl")
    r0 = ev.evaluate(0, n=400)
    assert r0.vs_previous is None and r0.vs_best is None and r0.best_step == 0
    r1 = ev.evaluate(1, n=400)  # the same model and noise: identical features
    assert r1.vs_previous["difference"] == 0.0 and r1.vs_previous["ci95"] == [0.0, 0.0]
    assert r1.vs_previous["summary"] == "not distinguishable from step 0 (+0.000 ± 0.000)"
    model.scale = 1.5
    r2 = ev.evaluate(2, n=400)
    assert r2.vs_previous["ci95"][1] < 0 and r2.vs_previous["step"] == 1
    assert r2.vs_previous["summary"].startswith("better than step 1 by ")
    model.scale = 3.0
    r3 = ev.evaluate(3, n=400)
    assert r3.vs_best["step"] == 2 and r3.vs_best["summary"].startswith("worse than step 2 by ")
    assert any(m.startswith("step 2: better than step 1 by ") for m in logs)
    rows = read_jsonl(tmp_path / "log.jsonl")
    assert rows[3]["vs_best"]["summary"] == r3.vs_best["summary"] and rows[3]["best_step"] == 2
    # The evaluator's comparison is compare_features on the same samples.
    feats = {}
    for scale in (1.5, 3.0):
        images = torch.sigmoid(scale * SampleNoise(0, 0, 400).randn(1, 4, 4))
        with torch.no_grad():
            feats[scale] = _Extractor()(images)
    direct = compare_features(feats[3.0], feats[1.5], ev.reference.record)
    assert r3.vs_best["difference"] == pytest.approx(direct.difference, rel=1e-9)
    assert r3.vs_best["ci95"][0] == pytest.approx(direct.ci95[0], rel=1e-6)
    assert r3.vs_best["ci95"][1] == pytest.approx(direct.ci95[1], rel=1e-6)


def test_keep_best_only_on_a_significant_improvement(real, tmp_path):
    model = _NoiseModel(1.0)
    kept: list = []
    ev = _evaluator(real, tmp_path, model, keep_best=kept.append, keep_best_when="significant")
    for step, scale in enumerate([1.0, 1.0, 1.5, 1.52, 1.5]):
        model.scale = scale
        ev.evaluate(step, n=400)
    assert [r.step for r in kept] == [0, 2]  # 1.52 vs 1.5: not distinguishable
    assert ev.best.step == 2 and ev.records[-1].best_step == 2


def test_paired_state_survives_a_resume(real, tmp_path):
    model = _NoiseModel(1.0)
    ev = _evaluator(real, tmp_path, model)
    ev.evaluate(0, n=400)
    model.scale = 1.5
    ev.evaluate(1, n=400)
    again = _evaluator(real, tmp_path, model)
    again.load_state_dict(ev.state_dict())
    r = again.evaluate(2, n=400)
    assert r.vs_previous["step"] == 1 and r.vs_previous["difference"] == 0.0
    assert r.vs_best["step"] == 1


def test_paired_adaptive_evaluation_uses_per_sample_variance(real, tmp_path):
    ev = _evaluator(real, tmp_path, _NoiseModel(1.0))
    r = ev.evaluate(0, mode="adaptive", n=3000, tolerance=0.02)
    assert "per-sample influence values" in r.estimate["details"]["variance"]


def test_paired_needs_a_sampler_that_takes_noise(real, tmp_path):
    class Plain(nn.Module):
        def sample(self, batch_size: int) -> torch.Tensor:
            return torch.rand(batch_size, 1, 4, 4)

    with pytest.raises(FidevalError, match=r"^paired=True: the sampler Plain takes no per-sample"):
        _evaluator(real, tmp_path, Plain())
    with pytest.raises(FidevalError, match=r"keep_best_when='significant' .* needs paired=True$"):
        _evaluator(real, tmp_path, Plain(), paired=False, keep_best_when="significant")

    def with_generators(batch_size: int, generator=None) -> torch.Tensor:
        return torch.stack([torch.rand(1, 4, 4, generator=g) for g in generator])

    a = _evaluator(real, tmp_path, with_generators, batch_size=50).evaluate(0, n=200)
    b = _evaluator(real, tmp_path, with_generators, batch_size=40).evaluate(5, n=200)
    assert a.fid_plain == pytest.approx(b.fid_plain, rel=1e-10)
