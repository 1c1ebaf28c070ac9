"""``estimate_fid``: the current union evaluator against the previous one, same run.

Synthetic ReLU-like correlated features (as ``bench_frechet.py``): N generated samples in
K groups (default d = 2048, N = 10 000, K = 10) against a reference of M samples
(default 20 000, full rank: a Cholesky reference). Times ``estimate_fid`` twice on the
same (flushed) group statistics:

* **anchor** — the previous ``UnionFrechet``, kept verbatim below: each group projected
  with two dense products Fᵀ(M2_g F), each union's projection gathered and summed from
  the K stored ones;
* **current** — ``fideval.estimate.subsets.UnionFrechet``: lower-triangle congruences,
  in-place sums (P_all − Σ_{g∉S} P_g for large unions), statistics at one power of two;

prints both times, their ratio, the time of one ``eigvalsh`` of size d (each union costs
one; the estimators need about 1 + K + 5R distinct unions) and the largest relative
difference between the two results over every value and interval (must be ≤ 1e-10).

    python benchmarks/bench_estimate.py [--d 2048] [--n 10000] [--groups 10] [--m 20000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable

import numpy as np
import torch

import fideval.estimate.core as core
from bench_frechet import relu_features
from fideval import FrechetReference, GroupedStats
from fideval.errors import FidevalError
from fideval.estimate import FidEstimate, estimate_fid
from fideval.frechet import FrechetResult

VALUES = ("fid", "fid_bias_corrected", "fid_infinity", "fid_at_target")


class LegacyUnionFrechet:
    """The previous union evaluator, verbatim (the anchor of this benchmark)."""

    def __init__(self, grouped: GroupedStats, reference: FrechetReference) -> None:
        sizes = grouped.sizes()
        if grouped.dim is not None and grouped.dim != reference.dim:
            raise FidevalError("dimension mismatch")
        self.k = grouped.k
        self.sizes = sizes
        self.reference = reference
        f = reference.factor
        dev = f.device
        self._n = torch.tensor(sizes, dtype=torch.float64, device=dev)
        mus, bs, ps, ts = [], [], [], []
        for g in range(self.k):
            st = grouped.group(g)
            mu = st.mean_tensor.to(dev)
            m2 = st.m2_tensor.to(dev)
            mus.append(mu)
            bs.append(f.mT @ mu)
            ps.append(f.mT @ m2 @ f)
            ts.append(torch.diagonal(m2).sum())
        self._mu = torch.stack(mus)
        self._b = torch.stack(bs)
        self._p = torch.stack(ps)
        self._t = torch.stack(ts)
        self._cache: dict[frozenset[int], FrechetResult] = {}
        self.evaluations = 0

    def n_of(self, subset: Iterable[int]) -> int:
        return int(sum(self.sizes[g] for g in subset))

    def fd(self, subset: Iterable[int]) -> FrechetResult:
        key = frozenset(int(g) for g in subset)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        idx = torch.tensor(sorted(key), dtype=torch.long, device=self._mu.device)
        n = self._n[idx]
        n_s = float(n.sum())
        mu_s = (n[:, None] * self._mu[idx]).sum(0) / n_s
        b_s = (n[:, None] * self._b[idx]).sum(0) / n_s
        db = self._b[idx] - b_s
        dmu = self._mu[idx] - mu_s
        c = (self._p[idx].sum(0) + (n[:, None] * db).mT @ db) / (n_s - 1)
        tr1 = float((self._t[idx].sum() + (n * (dmu * dmu).sum(1)).sum()) / (n_s - 1))
        result = self.reference.compare_projected(mu_s, c, tr1, n=round(n_s))
        self._cache[key] = result
        self.evaluations += 1
        return result


def numbers(est: FidEstimate) -> dict[str, float]:
    """Every value and interval end of an estimate, by name."""
    out: dict[str, float] = {}
    for name in VALUES:
        out[name] = est.value(name)
        lo, hi = est.ci(name)
        out[f"{name}_lo"], out[f"{name}_hi"] = lo, hi
    for name, detail in est.details.items():
        if isinstance(detail, dict):
            for key in ("fid_infinity", "slope", "fid_at_target"):
                out[f"{name}.{key}"] = float(detail[key])
    return out


def run(
    grouped: GroupedStats, reference: FrechetReference, evaluator: type
) -> tuple[float, FidEstimate]:
    saved = core.UnionFrechet
    core.UnionFrechet = evaluator  # type: ignore[misc]
    time.sleep(1.0)  # let the BLAS worker threads of the previous step go idle
    try:
        t = time.perf_counter()
        est = estimate_fid(grouped, reference)
        return time.perf_counter() - t, est
    finally:
        core.UnionFrechet = saved  # type: ignore[misc]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--n", type=int, default=10_000, help="generated samples N")
    ap.add_argument("--groups", type=int, default=10, help="K")
    ap.add_argument("--m", type=int, default=20_000, help="reference samples M")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    d = args.d
    mix = (rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
    mix2 = mix + (0.1 * rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
    y = relu_features(rng, args.m, mix2, 0.2)
    reference = FrechetReference(y.mean(0, dtype=np.float64), np.cov(y, rowvar=False), n=args.m)
    grouped = GroupedStats(args.groups)
    grouped.update(relu_features(rng, args.n, mix, 0.1))
    for g in grouped.groups:
        _ = g.mean_tensor  # flush the buffered rows: streaming cost, not the estimator's
    print(
        f"torch threads: {torch.get_num_threads()}; d={d}, N={args.n}, K={args.groups}, "
        f"M={args.m}, reference factor: {reference.method}"
    )

    t_old, old = run(grouped, reference, LegacyUnionFrechet)
    t_new, new = run(grouped, reference, core.UnionFrechet)
    sym = reference.factor.mT @ reference.factor
    t_eig = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        torch.linalg.eigvalsh(sym)
        t_eig = min(t_eig, time.perf_counter() - t)
    a, b = numbers(old), numbers(new)
    worst = max(abs(a[key] - b[key]) / max(abs(a[key]), 1e-300) for key in a)
    print(f"  anchor (previous UnionFrechet)  {t_old:7.2f} s   {old.evaluations} unions")
    print(f"  current UnionFrechet            {t_new:7.2f} s   {new.evaluations} unions")
    print(f"  speed-up: {t_old / t_new:.2f}x")
    print(
        f"  one eigvalsh of size {d} (best of 3): {t_eig:.2f} s; x {new.evaluations} unions = "
        f"{t_eig * new.evaluations:.2f} s (the floor of either evaluator)"
    )
    print(
        f"  fid {new.fid:.10g}, bias-corrected {new.fid_bias_corrected:.10g}, "
        f"FID∞ {new.fid_infinity:.10g}, at target {new.fid_at_target:.10g}"
    )
    print(
        f"  largest relative difference over {len(a)} values and interval ends: {worst:.2e} "
        f"({'OK' if worst <= 1e-10 else 'FAIL'}: ≤ 1e-10)"
    )


if __name__ == "__main__":
    main()
