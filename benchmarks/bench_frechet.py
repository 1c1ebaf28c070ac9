"""Fréchet step: fideval vs pytorch-fid's sqrtm formula, same statistics, one run.

Synthetic ReLU-like correlated features (d=2048), N=10 000 (full rank) and N=1 000
(rank-deficient). Prints seconds and the speed ratio against pytorch-fid
(``calculate_frechet_distance``: ``scipy.linalg.sqrtm`` of Σ1Σ2) of the drop-in
``frechet_distance(mu1, sigma1, mu2, sigma2)`` (N unknown, as with pytorch-fid's
``.npz`` files), the statistics route with N known, a cached reference, and the exact
features route (QR + nuclear norm), and each value's relative difference from the
features route (whose accuracy tests/test_frechet_hard.py measures against a 40-digit
reference).

Also: streaming statistics throughput (features/s) against a plain float64 ``X.T @ X``
of the same data, and peak memory of streaming as N grows (flat in N).

    python benchmarks/bench_frechet.py [--d 2048] [--n 10000 1000] [--repeats 3] [--anchor-repeats 1]
        [--no-streaming]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import torch

from fideval.frechet import (
    FrechetReference,
    frechet_details,
    frechet_distance,
    frechet_from_features,
)
from fideval.stats import GaussianStats


def anchor_name() -> str:
    try:
        import pytorch_fid  # noqa: F401
    except ImportError:
        return "pytorch-fid's formula, re-implemented (scipy sqrtm)"
    return "pytorch-fid calculate_frechet_distance (scipy sqrtm)"


def anchor_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """pytorch-fid's calculate_frechet_distance (imported when installed)."""
    try:
        from pytorch_fid.fid_score import calculate_frechet_distance

        return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))
    except ImportError:  # the same formula, re-implemented
        from scipy import linalg

        diff = mu1 - mu2
        covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * 1e-6
            covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
        if np.iscomplexobj(covmean):
            covmean = covmean.real
        return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def relu_features(rng: np.random.Generator, n: int, mix: np.ndarray, shift: float) -> np.ndarray:
    z = rng.standard_normal((n, mix.shape[0])).astype(np.float32)
    return np.maximum(z @ mix + shift, 0.0).astype(np.float32)


def timed(fn, repeats: int, warmup: bool = False):
    """Best of ``repeats`` calls. ``warmup``: one untimed call first — the BLAS worker
    threads of the previous step (numpy's or scipy's OpenBLAS, torch's MKL) spin for a
    while after their last call and would otherwise share the cores with this one."""
    if warmup:
        fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_distance(
    d: int, n: int, repeats: int, rng: np.random.Generator, anchor_repeats: int = 1
) -> None:
    mix = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
    mix2 = mix + (0.1 * rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
    x = relu_features(rng, n, mix, 0.1)
    y = relu_features(rng, n, mix2, 0.2)
    mu1, s1 = x.mean(0, dtype=np.float64), np.cov(x, rowvar=False)
    mu2, s2 = y.mean(0, dtype=np.float64), np.cov(y, rowvar=False)

    t_anchor, v_anchor = timed(lambda: anchor_frechet(mu1, s1, mu2, s2), anchor_repeats)
    t_drop, v_drop = timed(lambda: frechet_distance(mu1, s1, mu2, s2), repeats, warmup=True)
    r_drop = frechet_details(mu1, s1, mu2, s2)
    t_ours, r = timed(lambda: frechet_details(mu1, s1, mu2, s2, n1=n, n2=n), repeats, True)
    ref = FrechetReference(mu2, s2, n=n)
    t_cached, rc = timed(lambda: ref.compare(mu1, s1, n=n), repeats, warmup=True)
    print(f"\nd={d}, N={n} ({'rank-deficient' if n <= d else 'full rank'})")
    print(f"  {anchor_name()}  {t_anchor:8.2f} s   FID {v_anchor:.10g}")
    print(f"  fideval.frechet_distance, no N [{r_drop.method}] {t_drop:8.2f} s   FID {v_drop:.10g}")
    print(f"  fideval.frechet, N known [{r.method}] {t_ours:8.2f} s   FID {r.value:.10g}")
    print(f"  fideval cached reference    {t_cached:8.2f} s   FID {rc.value:.10g}")
    print(
        f"  speed-up: drop-in without N {t_anchor / t_drop:.1f}x, N known "
        f"{t_anchor / t_ours:.1f}x (cached: {t_anchor / t_cached:.1f}x)"
    )
    t_feat, exact = timed(lambda: frechet_from_features(x, y), repeats, warmup=True)
    print(f"  fideval features [{exact.method}] {t_feat:8.2f} s   FID {exact.value:.10g}")
    print(f"  speed-up of the features route: {t_anchor / t_feat:.1f}x")
    for name, v in (
        ("pytorch-fid", v_anchor),
        ("fideval no N", v_drop),
        ("fideval stats", r.value),
    ):
        print(
            f"  rel. difference from the features route, {name:13s}: "
            f"{abs(v - exact.value) / exact.value:.2e}"
        )


def bench_streaming(d: int, n: int, rng: np.random.Generator) -> None:
    x = rng.standard_normal((n, d)).astype(np.float32)
    xt = torch.from_numpy(x)
    batch = 500

    def plain() -> torch.Tensor:
        x64 = xt.double()
        return x64.T @ x64

    def streaming() -> GaussianStats:
        s = GaussianStats(d)
        for i in range(0, n, batch):
            s.update(xt[i : i + batch])
        return s

    t_plain, _ = timed(plain, 2)
    t_stream, _ = timed(streaming, 2)
    print(f"\nstreaming statistics, d={d}, N={n}, batch {batch}")
    print(f"  plain float64 X.T @ X      {n / t_plain:10.0f} features/s")
    print(f"  GaussianStats.update       {n / t_stream:10.0f} features/s")
    print(f"  ratio: {t_plain / t_stream:.2f} of plain X.T @ X (target ≥ 0.8)")

    print("  peak memory while streaming (tracemalloc + torch tensors of the accumulator):")
    for total in (5_000, 20_000, 80_000):
        tracemalloc.start()
        s = GaussianStats(d)
        for _ in range(0, total, batch):
            s.update(rng.standard_normal((batch, d)).astype(np.float32))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        state = 8 * (d * d + d)
        print(
            f"    N={total:6d}: numpy peak {peak / 2**20:6.1f} MiB, "
            f"accumulator {state / 2**20:.1f} MiB (independent of N)"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3, help="best of R for fideval (anchor: 1)")
    ap.add_argument("--anchor-repeats", type=int, default=1, help="best of R for pytorch-fid")
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 1_000], help="sample counts")
    ap.add_argument("--no-streaming", action="store_true", help="skip the streaming part")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"torch threads: {torch.get_num_threads()}")
    for n in args.n:
        bench_distance(args.d, n, args.repeats, rng, args.anchor_repeats)
    if not args.no_streaming:
        bench_streaming(args.d, 20_000, rng)


if __name__ == "__main__":
    main()
