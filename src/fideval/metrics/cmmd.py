"""CMMD (Jayasumana et al., "Rethinking FID: Towards a Better Evaluation Metric
for Image Generation", CVPR 2024).

MMD² between L2-normalised embeddings (CLIP in the paper) under the Gaussian
RBF kernel k(x, y) = exp(−‖x − y‖² / (2σ²)), σ = 10, multiplied by 1000:

    CMMD = 1000 · [ (1/m²) Σ_{i,j} k(x_i, x_j) + (1/n²) Σ_{i,j} k(y_i, y_j)
                    − (2/(m n)) Σ_{i,j} k(x_i, y_j) ]

This is the minimum-variance, biased V-statistic (diagonal terms included) of
the paper's reference implementation (google-research ``cmmd/distance.py``).
``unbiased=True`` drops the diagonal terms (Σ_{i≠j}, divided by m(m−1) and
n(n−1)): the unbiased U-statistic, which can be negative. fideval does not
compute embeddings: pass your own (N, d) arrays; they are L2-normalised here
(as the reference's CLIP embedding step does) unless ``normalize=False``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import FidevalError
from ._distances import (
    as_features,
    check_same_dim,
    iter_strips,
    sq_dists,
    sq_norms,
    unit_scale,
)

SIGMA = 10.0
SCALE = 1000.0


def _rbf_sums(
    a: torch.Tensor,
    b: torch.Tensor,
    a_sq: torch.Tensor,
    b_sq: torch.Tensor,
    *,
    same: bool,
    gamma: float,
    block_bytes: int | None,
) -> tuple[float, float]:
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    diag = torch.zeros((), dtype=torch.float64, device=a.device)
    for s, e in iter_strips(a.shape[0], b.shape[0], a.element_size(), block_bytes):
        k = sq_dists(a[s:e], b, a_sq[s:e], b_sq).mul_(-gamma).exp_()
        total += k.sum(dtype=torch.float64)
        if same:
            rows = torch.arange(e - s, device=a.device)
            diag += k[rows, rows + s].sum(dtype=torch.float64)
    return float(total), float(diag)


def cmmd(
    x: Any,
    y: Any,
    *,
    sigma: float = SIGMA,
    scale: float = SCALE,
    unbiased: bool = False,
    normalize: bool = True,
    dtype: str | torch.dtype = "float64",
    device: str | torch.device | None = None,
    block_bytes: int | None = None,
    names: tuple[str, str] = ("x", "y"),
) -> float:
    """CMMD between embedding sets ``x`` (m, d) and ``y`` (n, d); see module doc.

    Returns a float (dimensionless, ×``scale``). The default estimator is the
    reference's biased V-statistic (≥ 0, exactly 0 for a set against itself);
    ``unbiased=True`` gives the U-statistic.
    """
    min_rows = 2 if unbiased else 1
    xt = as_features(x, names[0], min_rows=min_rows, dtype=dtype, device=device)
    yt = as_features(y, names[1], min_rows=min_rows, dtype=dtype, device=device)
    check_same_dim(xt, yt, *names)
    if not (math.isfinite(sigma) and sigma**2 > 0 and math.isfinite(1.0 / (2.0 * sigma**2))):
        raise FidevalError(f"sigma must be a finite number > 0 (and 1/(2σ²) finite), got {sigma}")
    if not (math.isfinite(scale) and scale > 0):
        raise FidevalError(f"scale must be a finite number > 0, got {scale}")
    if normalize:
        xt, yt = _normalize(xt, names[0]), _normalize(yt, names[1])
    gamma = 1.0 / (2.0 * sigma**2)
    x_sq, y_sq = sq_norms(xt), sq_norms(yt)
    kw = {"gamma": gamma, "block_bytes": block_bytes}
    sxx, dxx = _rbf_sums(xt, xt, x_sq, x_sq, same=True, **kw)
    syy, dyy = _rbf_sums(yt, yt, y_sq, y_sq, same=True, **kw)
    sxy, _ = _rbf_sums(xt, yt, x_sq, y_sq, same=False, **kw)
    m, n = xt.shape[0], yt.shape[0]
    if unbiased:
        val = (sxx - dxx) / (m * (m - 1)) + (syy - dyy) / (n * (n - 1)) - 2.0 * sxy / (m * n)
    else:
        val = sxx / m**2 + syy / n**2 - 2.0 * sxy / (m * n)
    return float(scale * val)


def _normalize(t: torch.Tensor, name: str) -> torch.Tensor:
    (t,) = unit_scale(t)  # row normalisation is scale-free; the norms must not overflow
    norms = torch.linalg.vector_norm(t, dim=1, keepdim=True)
    zero = torch.nonzero(norms.flatten() == 0).flatten()
    if zero.numel():
        first = ", ".join(str(int(i)) for i in zero[:5].cpu())
        raise FidevalError(
            f"{name}: {zero.numel()} rows are all zeros (first rows: {first}); "
            "they cannot be L2-normalised"
        )
    return t / norms
