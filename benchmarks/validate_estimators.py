"""Validate fideval.estimate on synthetic features with known FID∞.

Not a test: prints a table (and appends one JSON line per run to ``--out``).

Cases (reference exact: M = ∞, a FrechetReference of the true moments, so only the
generated side is sampled):

* ``gaussian``: reference N(0, Λ), Λ = diag(λ), λ_i ∝ i^(−1/2), tr Λ = 100; generated
  N(μ_g, BΛBᵀ), B = I + 0.3·G (G symmetric Gaussian, entries of variance 1/d),
  ‖μ_g‖² = 5. FID∞ = FD(model, reference) exactly (≈ 14).
* ``relu``: ReLU of the same correlated Gaussians (+ the mean shift μ_g), against
  ReLU of N(0, Λ). Moments in closed form (arc-cosine kernel, Cho & Saul 2009):
  E relu(h_i) = σ_i/√(2π), E relu(h_i) relu(h_j) = σ_iσ_j (sin θ + (π − θ) cos θ)/(2π),
  cos θ = ρ_ij; so FID∞ is exact here too (no "very large sample" needed).

Per seed: the first 5 000 samples are drawn (float32 z @ Lᵀ + μ in chunks) into
GroupedStats(K=10) and estimated (target 50 000); FD_50k is the FD of the same stream
continued to 50 000. For the Gaussian case the statistics of the 45 000 continuation
samples are drawn from their exact sampling distribution (mean ~ N(μ, Σ/n), scatter
~ L·Wishart(I, n−1)·Lᵀ by Bartlett's decomposition) and Chan-merged: FD_50k has
exactly the distribution of 50 000 Gaussian samples at a fraction of the cost. The
ReLU continuation is sampled directly. E[FD_50k] is the mean of FD_50k over seeds.

Adaptive runs (fresh streams, batches of 500) record the samples used until the 95%
half-width of ``fid_at_target`` is ≤ 1.0, then continue the same stream to ≤ 0.5.

Usage::

    python benchmarks/validate_estimators.py --dims 64 512 2048 --seeds 30 \\
        --seeds-2048 10 --adaptive-seeds 10 --out /tmp/validate.jsonl
    python benchmarks/validate_estimators.py --table-only --out /tmp/validate.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict

import numpy as np
import torch

from fideval import FrechetReference, GaussianStats, GroupedStats
from fideval.estimate import AdaptiveEstimator, estimate_fid

N_SMALL, N_LARGE, K, CHUNK = 5_000, 50_000, 10, 1_000
ESTIMATORS = ("quadratic", "jackknife", "richardson", "chong-forsyth")


class Model:
    """Generated and reference distributions of one case at one d, with exact moments."""

    def __init__(self, case: str, d: int) -> None:
        rng = np.random.default_rng([17, d])
        lam = np.arange(1, d + 1) ** -0.5
        lam *= 100.0 / lam.sum()
        g = rng.standard_normal((d, d))
        g = (g + g.T) / math.sqrt(2 * d)
        self.lg = (np.eye(d) + 0.3 * g) * np.sqrt(lam)  # generated pre-activation factor
        u = rng.standard_normal(d)
        self.shift = math.sqrt(5.0) * u / np.linalg.norm(u)
        self.case, self.d = case, d
        self.lg32 = torch.from_numpy(self.lg.T.astype(np.float32))
        if case == "gaussian":
            self.mu_g, self.sigma_g = self.shift, self.lg @ self.lg.T
            mu_r, sigma_r = np.zeros(d), np.diag(lam)
        else:
            self.mu_g, self.sigma_g = _relu_moments(self.lg @ self.lg.T)
            self.mu_g = self.mu_g + self.shift
            mu_r, sigma_r = _relu_moments(np.diag(lam))
        self.reference = FrechetReference(mu_r, sigma_r)
        self.fd_inf = self.reference.compare(self.mu_g, self.sigma_g).value

    def sample(self, rng: np.random.Generator, n: int) -> torch.Tensor:
        z = torch.from_numpy(rng.standard_normal((n, self.d), dtype=np.float32))
        h = z @ self.lg32
        if self.case == "relu":
            h = torch.relu(h)
        return h + torch.from_numpy(self.shift.astype(np.float32))

    def wishart_stats(self, rng: np.random.Generator, n: int) -> GaussianStats:
        """Exact-in-distribution statistics of n Gaussian samples (Bartlett)."""
        d, nu = self.d, n - 1
        a = np.tril(rng.standard_normal((d, d)), -1)
        a[np.diag_indices(d)] = np.sqrt(rng.chisquare(nu - np.arange(d)))
        la = torch.from_numpy(self.lg) @ torch.from_numpy(a)
        cov = (la @ la.T) / nu
        mean = self.mu_g + self.lg @ rng.standard_normal(d) / math.sqrt(n)
        return GaussianStats.from_moments(n, mean, 0.5 * (cov + cov.T))


def _relu_moments(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of relu(h), h ~ N(0, C) (arc-cosine kernel of degree 1)."""
    s = np.sqrt(np.diag(c))
    rho = np.clip(c / np.outer(s, s), -1.0, 1.0)
    theta = np.arccos(rho)
    second = np.outer(s, s) * (np.sin(theta) + (np.pi - theta) * rho) / (2 * np.pi)
    mean = s / math.sqrt(2 * np.pi)
    return mean, second - np.outer(mean, mean)


def run_seed(model: Model, seed: int, orders: int) -> dict:
    rng = np.random.default_rng([model.d, seed, 1 if model.case == "relu" else 0])
    grouped = GroupedStats(K)
    for _ in range(N_SMALL // CHUNK):
        grouped.update(model.sample(rng, CHUNK))
    t0 = time.perf_counter()
    est = estimate_fid(grouped, model.reference, target_n=N_LARGE, orders=orders, seed=seed)
    t_est = time.perf_counter() - t0
    total = grouped.total()
    if model.case == "gaussian":
        total.merge(model.wishart_stats(rng, N_LARGE - N_SMALL))
    else:
        for _ in range((N_LARGE - N_SMALL) // CHUNK):
            total.update(model.sample(rng, CHUNK))
    fd50 = model.reference.compare(total.mean_tensor, total.cov_tensor, total.n).value
    rec = {
        "kind": "fixed",
        "case": model.case,
        "d": model.d,
        "seed": seed,
        "fd_inf": model.fd_inf,
        "fd5k": est.fid,
        "fd5k_ci": list(est.fid_ci95),
        "fd50k": fd50,
        "valid": est.valid,
        "warnings": est.warnings,
        "t_estimate_s": t_est,
        "evaluations": est.evaluations,
    }
    for name in ESTIMATORS:
        det = est.details[name]
        for key in ("fid_infinity", "fid_infinity_ci95", "fid_at_target", "fid_at_target_ci95"):
            rec[f"{name}:{key}"] = det[key]
    return rec


def run_adaptive(model: Model, seed: int, orders: int) -> dict:
    rng = np.random.default_rng([model.d, seed, 7])
    ad = AdaptiveEstimator(model.reference, 1.0, max_samples=N_LARGE, orders=orders, seed=seed)
    out = {"kind": "adaptive", "case": model.case, "d": model.d, "seed": seed}
    for tol in (1.0, 0.5):
        if tol != 1.0:
            ad.resume(tol)
        while not ad.done:
            ad.update(model.sample(rng, 500))
        est = ad.estimate()
        out[f"n@{tol}"] = ad.n
        out[f"reached@{tol}"] = ad.stopped_because == "tolerance reached"
        out[f"value@{tol}"] = est.fid_at_target
        out[f"ci@{tol}"] = list(est.fid_at_target_ci95)
    out["checks"] = len(ad.history)
    return out


# --------------------------------------------------------------------------- table


def _stats(values: np.ndarray, truth: float) -> tuple[float, float, float]:
    bias = float(values.mean() - truth)
    sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    rmse = float(math.sqrt(((values - truth) ** 2).mean()))
    return bias, sd, rmse


def table(records: list[dict]) -> str:
    lines = []
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    adaptive: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in records:
        (groups if r["kind"] == "fixed" else adaptive)[(r["case"], r["d"])].append(r)
    for key in sorted(groups, key=lambda k: (k[0], k[1])):
        rs = groups[key]
        case, d = key
        fd50 = np.array([r["fd50k"] for r in rs])
        fd5 = np.array([r["fd5k"] for r in rs])
        e50, e5, inf = fd50.mean(), fd5.mean(), rs[0]["fd_inf"]
        se50 = fd50.std(ddof=1) / math.sqrt(len(rs)) if len(rs) > 1 else math.nan
        valid = sum(r["valid"] for r in rs)
        lines.append(
            f"\n### {case}, d={d}: {len(rs)} seeds; FID∞ = {inf:.3f} (exact), "
            f"E[FD_50k] = {e50:.3f} ± {se50:.3f} (mean of seeds ± SE), E[FD_5k] = {e5:.3f}; "
            f"valid {valid}/{len(rs)}; {np.mean([r['t_estimate_s'] for r in rs]):.1f} s "
            f"and {rs[0]['evaluations']} FD solves per estimate\n"
        )
        lines.append(
            "| estimate (from 5k unless stated) | truth | bias ± SE | SD | RMSE | "
            "bias removed | 95% coverage |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        plain_bias = e5 - e50

        def row(
            label: str,
            vals: np.ndarray,
            truth: float,
            cis: list | None,
            tname: str,
            se50: float = se50,
            plain_bias: float = plain_bias,
        ) -> None:
            bias, sd, rmse = _stats(vals, truth)
            se_t = se50 if tname == "E[FD_50k]" else 0.0
            se_b = math.sqrt(sd**2 / len(vals) + se_t**2) if len(vals) > 1 else math.nan
            removed = (
                f"{100 * (1 - abs(bias) / abs(plain_bias)):.0f}%"
                if tname == "E[FD_50k]" and plain_bias
                else ""
            )
            cov = ""
            if cis is not None:
                cov = f"{np.mean([lo <= truth <= hi for lo, hi in cis]) * 100:.0f}%"
            lines.append(
                f"| {label} | {tname} | {bias:+.3f} ± {se_b:.3f} | {sd:.3f} | {rmse:.3f} | {removed} | {cov} |"
            )

        row("plain FD_50k", fd50, e50, None, "E[FD_50k]")
        row("plain FD_5k", fd5, e50, None, "E[FD_50k]")
        row("plain FD_5k (interval for E[FD_5k])", fd5, e5, [r["fd5k_ci"] for r in rs], "E[FD_5k]")
        for name in ESTIMATORS:
            vals = np.array([r[f"{name}:fid_at_target"] for r in rs])
            cis = [r[f"{name}:fid_at_target_ci95"] for r in rs]
            row(f"{name} → E[FD_50k]", vals, e50, cis, "E[FD_50k]")
        for name in ESTIMATORS:
            vals = np.array([r[f"{name}:fid_infinity"] for r in rs])
            cis = [r[f"{name}:fid_infinity_ci95"] for r in rs]
            row(f"{name} FID∞", vals, inf, cis, "FID∞")
        ad = adaptive.get(key, [])
        if ad:
            lines.append("")
            lines.append(
                "| adaptive (fid_at_target, batches of 500) | runs | samples used: median [min, max] | reached | interval covers E[FD_50k] |"
            )
            lines.append("|---|---|---|---|---|")
            for tol in (1.0, 0.5):
                ns = np.array([a[f"n@{tol}"] for a in ad])
                reached = sum(a[f"reached@{tol}"] for a in ad)
                cover = np.mean([a[f"ci@{tol}"][0] <= e50 <= a[f"ci@{tol}"][1] for a in ad])
                lines.append(
                    f"| ±{tol} | {len(ad)} | {int(np.median(ns))} [{ns.min()}, {ns.max()}] | "
                    f"{reached}/{len(ad)} | {100 * cover:.0f}% |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dims", type=int, nargs="+", default=[64, 512, 2048])
    p.add_argument("--cases", nargs="+", default=["gaussian", "relu"])
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--seeds-2048", type=int, default=None, help="seeds at d ≥ 2048")
    p.add_argument("--adaptive-seeds", type=int, default=10)
    p.add_argument("--orders", type=int, default=3)
    p.add_argument("--out", default="/tmp/validate.jsonl")
    p.add_argument("--table-only", action="store_true")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine, 2 threads spin-wait "
        "and slow eigvalsh down ~15x)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    if not args.table_only:
        for case in args.cases:
            for d in args.dims:
                model = Model(case, d)
                seeds = args.seeds if d < 2048 or args.seeds_2048 is None else args.seeds_2048
                for seed in range(seeds):
                    t0 = time.perf_counter()
                    rec = run_seed(model, seed, args.orders)
                    _append(args.out, rec)
                    print(f"{case} d={d} seed={seed}: {time.perf_counter() - t0:.1f}s", flush=True)
                for seed in range(min(args.adaptive_seeds, seeds)):
                    t0 = time.perf_counter()
                    _append(args.out, run_adaptive(model, seed, args.orders))
                    print(
                        f"{case} d={d} adaptive {seed}: {time.perf_counter() - t0:.1f}s", flush=True
                    )
    if not os.path.exists(args.out):
        print(f"{args.out}: no records", file=sys.stderr)
        return 1
    with open(args.out) as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    print(table(records))
    return 0


def _append(path: str, rec: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    sys.exit(main())
