"""Precision, recall (Kynkäänniemi et al., 2019), density and coverage (Naeem et al., 2020).

Each real sample r gets a k-NN ball B(r, NND_k(r)), NND_k the distance to its
k-th nearest *other* real sample; likewise each fake sample f with NND_k among
the fakes. With Euclidean distances, real set R (size N) and fake set F (size M):

    precision = (1/M) Σ_f 1[∃ r : ‖f − r‖ < NND_k(r)]          (fakes inside the real manifold)
    recall    = (1/N) Σ_r 1[∃ f : ‖r − f‖ < NND_k(f)]          (reals inside the fake manifold)
    density   = (1/(kM)) Σ_f Σ_r 1[‖f − r‖ < NND_k(r)]
    coverage  = (1/N) Σ_r 1[min_f ‖r − f‖ < NND_k(r)]

All four are dimensionless fractions (density can exceed 1). The strict "<" is
that of Naeem et al.'s reference implementation (``prdc``); Kynkäänniemi et
al.'s uses "≤": the two differ only on exact ties. One k for all four by
default (5, the ``prdc`` reference's recommendation); ``k_pr`` / ``k_dc`` set
precision/recall and density/coverage separately (Kynkäänniemi et al. used k=3).

Exact ties do occur: repeated images, and fakes that copy training images. A
fake that is an exact copy of a real point x_j lies at distance d(r, x_j) from
every real r; if x_j is r's k-th neighbour, the copy is on the boundary of
B(r) and, by the strict "<", outside it. The value of the expanded form
‖a‖² + ‖b‖² − 2aᵀb for one pair depends on the matrix product it comes from,
so computing d(r, x_j) for the radius and d(r, copy) for the test in two
products can put the copy one ulp inside. fideval computes each such distance
once: identical rows of both sets are first merged into one point (counted as
often as it occurs among the reals and among the fakes), so the copy and x_j
are one column, and the one value computed for the pair is both the radius and
the distance compared with it. A real point's copies are at distance exactly 0.
Distinct pairs at (nearly) equal distances are decided by the compute dtype's
round-off, as in any implementation.

Computed on row strips, all distances squared (comparing d² < r² is equivalent
and skips the square root): first each distinct fake against the fakes (fake
radii, recall of the points that are real and fake), then each distinct real
against all distinct points (real radii from the real columns, then precision,
density and coverage from the fake columns, and recall of the real-only
points, whose distances to fakes involve no copy). Cost N·(N + M) + M² pairs
of d multiply-adds, as three separate passes would; memory O(b·(N + M)), never
an N×M matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import FidevalError
from ._distances import (
    as_features,
    check_same_dim,
    iter_strips,
    kth_weighted,
    sq_dists,
    sq_norms,
    unique_rows,
    unit_scale,
)


@dataclass(frozen=True)
class PRDCResult:
    """Precision, recall, density, coverage and the settings that produced them."""

    precision: float
    recall: float
    density: float
    coverage: float
    k_pr: int
    k_dc: int
    n_real: int
    n_fake: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "density": self.density,
            "coverage": self.coverage,
            "k_pr": self.k_pr,
            "k_dc": self.k_dc,
            "n_real": self.n_real,
            "n_fake": self.n_fake,
        }


def _subsample(t: torch.Tensor, max_samples: int | None, rng: np.random.Generator) -> torch.Tensor:
    if max_samples is None or t.shape[0] <= max_samples:
        return t
    idx = np.sort(rng.choice(t.shape[0], size=max_samples, replace=False))
    return t[torch.from_numpy(idx).to(t.device)]


def prdc(
    real: Any,
    fake: Any,
    *,
    k: int = 5,
    k_pr: int | None = None,
    k_dc: int | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    dtype: str | torch.dtype = "float64",
    device: str | torch.device | None = None,
    block_bytes: int | None = None,
    names: tuple[str, str] = ("real", "fake"),
) -> PRDCResult:
    """Precision, recall, density and coverage of ``fake`` (M, d) against ``real`` (N, d).

    ``k``: neighbours for all four metrics unless ``k_pr`` (precision/recall) or
    ``k_dc`` (density/coverage) override it. ``max_samples``: if a set has more
    rows, a subset of that many is drawn without replacement with
    ``numpy.random.default_rng(seed)`` (real first, then fake); otherwise the
    result does not depend on the seed. ``dtype="float32"`` is faster (GPU,
    large N) at the cost of round-off in near-tie distances of distinct pairs;
    exact copies are decided exactly in either dtype (module doc).
    """
    kp = k if k_pr is None else k_pr
    kd = k if k_dc is None else k_dc
    for label, val in (("k", k), ("k_pr", kp), ("k_dc", kd)):
        if int(val) < 1:
            raise FidevalError(f"{label} must be ≥ 1, got {val}")
    kmax = max(kp, kd)
    rt = as_features(real, names[0], dtype=dtype, device=device)
    ft = as_features(fake, names[1], dtype=dtype, device=device)
    check_same_dim(rt, ft, *names)
    rt, ft = unit_scale(rt, ft)  # k-NN decisions are scale-free; squares must not overflow
    if max_samples is not None and max_samples < 1:
        raise FidevalError(f"max_samples must be ≥ 1, got {max_samples}")
    rng = np.random.default_rng(seed)
    rt = _subsample(rt, max_samples, rng)
    ft = _subsample(ft, max_samples, rng)
    for t, name, kk in ((rt, names[0], kmax), (ft, names[1], kp)):
        if t.shape[0] < kk + 1:
            raise FidevalError(
                f"{name}: {t.shape[0]} rows; k={kk} nearest neighbours need at least {kk + 1}"
            )

    n, m = rt.shape[0], ft.shape[0]
    both = torch.cat([rt, ft])
    del rt, ft  # the union holds every row; keep one copy
    precision_hits, recall_hits, density_hits, coverage_hits = _prdc_counts(
        both, n, kp, kd, block_bytes
    )
    return PRDCResult(
        precision=precision_hits / m,
        recall=recall_hits / n,
        density=density_hits / (kd * m),
        coverage=coverage_hits / n,
        k_pr=kp,
        k_dc=kd,
        n_real=n,
        n_fake=m,
    )


def _union(both: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    """Distinct rows of real ∪ fake ordered [real only | both | fake only], with counts.

    Returns (points, real counts, fake counts, a, a + b) where the first a points
    are only real, the next b are real and fake, the rest only fake.
    """
    u, inverse = unique_rows(both)
    nu = u.shape[0]
    real_w = torch.bincount(inverse[:n], minlength=nu)
    fake_w = torch.bincount(inverse[n:], minlength=nu)
    kind = (fake_w > 0).to(torch.int64) + (real_w == 0).to(torch.int64)  # 0, 1, 2
    if u is not both:  # merged rows: put them in order (with no repeats, both = [R; F])
        order = torch.argsort(kind, stable=True)
        u, real_w, fake_w, kind = u[order], real_w[order], fake_w[order], kind[order]
    counts = torch.bincount(kind, minlength=3)
    a, ab = int(counts[0]), int(counts[0] + counts[1])
    return u, real_w, fake_w, a, ab


def _prdc_counts(
    both: torch.Tensor, n: int, kp: int, kd: int, block_bytes: int | None
) -> tuple[int, int, int, int]:
    """(#fakes in a real ball, #reals in a fake ball, Σ_f #real balls holding f,
    #reals whose ball holds a fake), every row counted as often as it occurs.

    ``both`` = [real; fake] (N + M, d). Identical rows are merged into one point
    first, ordered [real only | real and fake | fake only]. Fake pass: each
    distinct fake's strip against the fakes gives its radius and the distances of
    the real-and-fake points compared with it (recall). Real pass: each distinct
    real's strip against all points gives its radii (from the real columns) and
    the distances compared with them (the fake columns: precision, density,
    coverage), plus recall of the real-only points. A distance compared with a
    radius is thus the very value the radius was chosen from whenever the two
    points are copies of each other.
    """
    u, real_w, fake_w, a, ab = _union(both, n)
    nu = u.shape[0]
    u_sq = sq_norms(u)
    dev = u.device
    size = u.element_size()

    # Fake pass: rows and columns are the fake points, u[a:].
    fakes, fakes_sq, w_fake = u[a:], u_sq[a:], fake_w[a:]
    nf = nu - a
    fake_radius = torch.empty(nf, dtype=u.dtype, device=dev)
    recalled_shared = torch.zeros(ab - a, dtype=torch.bool, device=dev)  # recall of u[a:ab]
    for s, e in iter_strips(nf, nf, size, block_bytes):
        d = sq_dists(fakes[s:e], fakes, fakes_sq[s:e], fakes_sq)
        own = torch.arange(s, e, device=dev)
        d[own - s, own] = 0.0  # a point's copies are at distance 0
        radius = kth_weighted(d, w_fake, (kp,), own)[kp]
        fake_radius[s:e] = radius
        if ab > a:
            recalled_shared |= (d[:, : ab - a] < radius[:, None]).any(dim=0)
        del d

    # Real pass: rows u[:ab], columns all points; real columns u[:ab], fake columns u[a:].
    in_real_ball = torch.zeros(nf, dtype=torch.bool, device=dev)  # precision, per fake
    balls_holding = torch.zeros(nf, dtype=torch.int64, device=dev)  # density, per fake
    covered = torch.zeros(ab, dtype=torch.bool, device=dev)  # coverage, per real
    recalled_only = torch.zeros(a, dtype=torch.bool, device=dev)  # recall of u[:a]
    w_real = real_w[:ab]
    unit = bool((w_real == 1).all())
    for s, e in iter_strips(ab, nu, size, block_bytes):
        d = sq_dists(u[s:e], u, u_sq[s:e], u_sq)  # (b, U)
        own = torch.arange(s, e, device=dev)
        d[own - s, own] = 0.0
        radii = kth_weighted(d[:, :ab], w_real, (kp, kd), own)
        to_fakes = d[:, a:]
        inside = to_fakes < radii[kp][:, None]
        in_real_ball |= inside.any(dim=0)
        if kd != kp:
            inside = to_fakes < radii[kd][:, None]
        if unit:
            balls_holding += inside.sum(dim=0)
        else:
            balls_holding += (inside * w_real[s:e, None]).sum(dim=0)
        covered[s:e] = inside.any(dim=1)
        if s < a:  # real-only rows: no copy among the fakes, compare with the fake radii
            stop = min(e, a) - s
            recalled_only[s : s + stop] = (to_fakes[:stop] < fake_radius[None, :]).any(dim=1)
        del d, to_fakes, inside

    recalled = torch.cat([recalled_only, recalled_shared])
    return (
        int((w_fake * in_real_ball).sum()),
        int((w_real * recalled).sum()),
        int((w_fake * balls_holding).sum()),
        int((w_real * covered).sum()),
    )
