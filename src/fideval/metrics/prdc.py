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
al.'s uses "≤": the two differ only on exact ties (probability 0 for
continuous features). One k for all four by default (5, the ``prdc``
reference's recommendation); ``k_pr`` / ``k_dc`` set precision/recall and
density/coverage separately (Kynkäänniemi et al. used k=3).

Computed on row strips with top-k: three passes (real×real, fake×fake,
real×fake), memory O(b·max(N, M)), never an N×M matrix.
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
    knn_sq_radii,
    sq_dists,
    sq_norms,
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

    def as_dict(self) -> dict[str, Any]:
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
    large N) at the cost of round-off in near-tie distances.
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

    r_sq, f_sq = sq_norms(rt), sq_norms(ft)
    # Radii as squared distances: comparisons d² < r² are equivalent and skip sqrt.
    real_radii = _radii_multi(rt, (kp, kd), block_bytes, r_sq)
    rad_r_pr, rad_r_dc = real_radii[kp], real_radii[kd]
    rad_f_pr = knn_sq_radii(ft, kp, block_bytes=block_bytes, x_sq=f_sq)

    n, m = rt.shape[0], ft.shape[0]
    in_real_pr = torch.zeros(m, dtype=torch.bool, device=rt.device)  # precision
    count_dc = torch.zeros(m, dtype=torch.int64, device=rt.device)  # density
    recall_hits = 0
    coverage_hits = 0
    for s, e in iter_strips(n, m, rt.element_size(), block_bytes):
        d = sq_dists(rt[s:e], ft, r_sq[s:e], f_sq)  # (b, M)
        in_real_pr |= (d < rad_r_pr[s:e, None]).any(dim=0)
        count_dc += (d < rad_r_dc[s:e, None]).sum(dim=0)
        recall_hits += int((d < rad_f_pr[None, :]).any(dim=1).sum())
        coverage_hits += int((d.min(dim=1).values < rad_r_dc[s:e]).sum())
    return PRDCResult(
        precision=float(in_real_pr.double().mean()),
        recall=recall_hits / n,
        density=float(count_dc.sum()) / (kd * m),
        coverage=coverage_hits / n,
        k_pr=kp,
        k_dc=kd,
        n_real=n,
        n_fake=m,
    )


def _radii_multi(
    x: torch.Tensor, ks: tuple[int, ...], block_bytes: int | None, x_sq: torch.Tensor
) -> dict[int, torch.Tensor]:
    """k-th NN squared radii for several k from one top-k pass."""
    kmax = max(ks)
    n = x.shape[0]
    top = torch.empty((n, kmax), dtype=x.dtype, device=x.device)
    for s, e in iter_strips(n, n, x.element_size(), block_bytes):
        d = sq_dists(x[s:e], x, x_sq[s:e], x_sq)
        rows = torch.arange(e - s, device=x.device)
        d[rows, rows + s] = float("inf")
        top[s:e] = torch.topk(d, kmax, dim=1, largest=False, sorted=True).values
    return {kk: top[:, kk - 1].contiguous() for kk in ks}
