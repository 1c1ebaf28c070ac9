"""Per-sample influence values of the Fréchet distance (first-order, delta method).

For Gaussians g = N(μ_g, Σ_g) (generated) and r = N(μ_r, Σ_r) (reference),

.. math::

    \\mathrm{FD}(g, r) = \\lVert\\mu_g-\\mu_r\\rVert^2 + \\operatorname{tr}\\Sigma_g
        + \\operatorname{tr}\\Sigma_r - 2\\operatorname{tr}(\\Sigma_g^{1/2}\\Sigma_r
        \\Sigma_g^{1/2})^{1/2}.

Its derivative in Σ_g is I − T, T the optimal-transport (Monge) map from g to r,

    T = Σ_g^{-½} (Σ_g^½ Σ_r Σ_g^½)^½ Σ_g^{-½},   T Σ_g T = Σ_r,

and the influence of one generated sample x (μ moves by x − μ_g, Σ by (x − μ_g)(x − μ_g)ᵀ − Σ_g) is

    IF_g(x) = 2Δμᵀ(x − μ_g) + (x − μ_g)ᵀ(I − T)(x − μ_g) − tr((I − T)Σ_g),  Δμ = μ_g − μ_r.

By symmetry a reference sample y has IF_r(y) with Δμ → −Δμ and T → T⁻¹ (the map r → g):
IF_r(y) = −2Δμᵀ(y − μ_r) + (y − μ_r)ᵀ(I − T⁻¹)(y − μ_r) − tr((I − T⁻¹)Σ_r). To first
order FD(ĝ_N, r̂_M) − FD(g, r) ≈ mean_i IF_g(x_i) + mean_j IF_r(y_j), so its variance is
Var IF_g / N + Var IF_r / M, for any feature distribution (Gaussian or not: the IF is that
of the functional FD(μ(P), Σ(P))).

**Computation.** With symmetric square roots S_g = Σ_g^½, S_r = Σ_r^½ (eigendecompositions)
and the SVD X = S_g S_r = U diag(s) Wᵀ:

* (Σ_g^½ Σ_r Σ_g^½)^½ = (XXᵀ)^½ = U diag(s) Uᵀ and (Σ_r^½ Σ_g Σ_r^½)^½ = W diag(s) Wᵀ;
* tr((Σ_gΣ_r)^½) = Σ s, and tr(TΣ_g) = tr(T⁻¹Σ_r) = Σ s;
* zᵀTz = ‖diag(√s) Uᵀ S_g⁺ z‖², zᵀT⁻¹z = ‖diag(√s) Wᵀ S_r⁺ z‖², so each sample costs one
  product with a d×d matrix and no d×d inverse is formed.

**Singular covariances.** S⁺ is the pseudo-inverse of the square root on the eigenvalues
above the round-off level (d·eps₆₄ + eps_in)·‖Σ‖₂ (eps_in: the machine epsilon of the
dtype the covariance was stored in); smaller ones are set to zero. This is exact for the
samples the covariance came from: their centred vectors lie in its range (rank ≤ N − 1).
In a direction of tiny eigenvalue w, T grows like w^{-½} but a sample's component there
is O(w^½), so its contribution zᵀTz = O(w^½) stays bounded; the clamped directions
contribute nothing to zᵀTz and their (round-off) share of ‖z‖² is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._arrays import ArrayLike, as_float64
from ..errors import FidevalError
from ..stats import GaussianStats

__all__ = [
    "FrechetInfluence",
    "GaussianRoots",
    "feature_stats",
    "gaussian_roots",
    "roots_from_features",
]

_EPS64 = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class GaussianRoots:
    """A Gaussian (μ, Σ) with its symmetric square root S = Σ^½ and the pseudo-inverse S⁺.

    ``rank`` counts the eigenvalues kept, ``clamped`` those set to zero (at or below
    ``tolerance``, the round-off level of the eigenvalues).
    """

    mu: torch.Tensor
    sigma: torch.Tensor
    root: torch.Tensor
    root_pinv: torch.Tensor
    rank: int
    clamped: int
    tolerance: float
    n: int | None = None

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def gaussian_roots(
    mu: ArrayLike, sigma: ArrayLike, n: int | None = None, *, name: str = "sigma"
) -> GaussianRoots:
    """Square root and pseudo-inverse square root of a covariance (module docstring).

    Args:
        mu: mean (d,).
        sigma: covariance (d, d), ddof=1; its dtype sets the round-off level.
        n: samples behind the statistics, when known (reported, not needed).
        name: used in error messages.
    """
    mu_t, _ = as_float64(mu, f"{name} mean")
    sigma_t, eps_in = as_float64(sigma, name)
    sigma_t = sigma_t.to(mu_t.device)
    d = mu_t.shape[0]
    if mu_t.ndim != 1 or sigma_t.shape != (d, d):
        raise FidevalError(
            f"{name}: expected a mean (d,) and a covariance (d, d), got "
            f"{tuple(mu_t.shape)} and {tuple(sigma_t.shape)}"
        )
    sym = 0.5 * (sigma_t + sigma_t.mT)
    w, v = torch.linalg.eigh(sym)
    scale = float(w.abs().max()) if w.numel() else 0.0
    tol = (d * _EPS64 + eps_in) * scale
    keep = w > tol
    w_kept = torch.where(keep, w, torch.zeros_like(w))
    root = (v * torch.sqrt(w_kept)) @ v.mT
    inv = torch.where(keep, 1.0 / torch.sqrt(torch.where(keep, w, torch.ones_like(w))), 0.0)
    root_pinv = (v * inv) @ v.mT
    return GaussianRoots(
        mu=mu_t,
        sigma=sym,
        root=root,
        root_pinv=root_pinv,
        rank=int(keep.sum()),
        clamped=int((~keep).sum()),
        tolerance=tol,
        n=n,
    )


def feature_shape(x: ArrayLike, name: str) -> tuple[int, int]:
    """(N, d) of a 2-D feature array with N ≥ 2 and d ≥ 1, without copying it."""
    shape = tuple(x.shape) if hasattr(x, "shape") else ()
    if len(shape) != 2:
        raise FidevalError(f"{name}: expected a 2-D (N, d) feature array, got shape {shape}")
    if shape[1] < 1:
        raise FidevalError(f"{name}: zero width (shape {shape}): expected d ≥ 1")
    if shape[0] < 2:
        raise FidevalError(f"{name}: need at least 2 samples, got N={shape[0]}")
    return int(shape[0]), int(shape[1])


def feature_stats(x: ArrayLike, name: str = "features", *, chunk: int = 8192) -> GaussianStats:
    """Streaming float64 mean and covariance of features (N, d), fed in row chunks (no
    float64 copy of the whole array); non-finite rows are an error."""
    n, _ = feature_shape(x, name)
    stats = GaussianStats()
    for start in range(0, n, chunk):
        stats.update(x[start : start + chunk])
    return stats


def roots_from_features(x: ArrayLike, name: str = "features") -> GaussianRoots:
    """:func:`gaussian_roots` of the mean and covariance (ddof=1) of features (N, d)."""
    stats = feature_stats(x, name)
    return gaussian_roots(stats.mean_tensor, stats.cov_tensor, stats.n, name=name)


class FrechetInfluence:
    """Influence values of FD(g, r) for generated samples (:meth:`generated`) and
    reference samples (:meth:`reference`); see the module docstring for the formulas.

    ``value`` is FD recomputed from the same square roots (a consistency check; the
    headline values elsewhere come from :mod:`fideval.frechet`).
    """

    def __init__(self, g: GaussianRoots, r: GaussianRoots) -> None:
        if g.dim != r.dim:
            raise FidevalError(f"dimension mismatch: generated d={g.dim}, reference d={r.dim}")
        self.g, self.r = g, r
        dev = g.mu.device
        r_root = r.root.to(dev)
        u, s, wh = torch.linalg.svd(g.root @ r_root)
        s = torch.clamp(s, min=0.0)
        self.trace_sqrt = float(s.sum())
        self.delta = g.mu - r.mu.to(dev)
        half = torch.sqrt(s)
        # zᵀTz = ‖zᵀ A_g‖² with A_g = S_g⁺ U diag(√s); likewise A_r for T⁻¹.
        self._a_g = g.root_pinv @ (u * half)
        self._a_r = r.root_pinv.to(dev) @ (wh.mT * half)
        self.trace_g = float(torch.diagonal(g.sigma).sum())
        self.trace_r = float(torch.diagonal(r.sigma).sum())
        self.value = (
            float(self.delta @ self.delta) + self.trace_g + self.trace_r - 2 * self.trace_sqrt
        )

    def transport_map(self) -> torch.Tensor:
        """T (d, d), the optimal-transport map from g to r: T = A_g A_gᵀ with
        A_g = S_g⁺ U diag(√s) (zero on the null space of Σ_g)."""
        return self._a_g @ self._a_g.mT

    @property
    def warnings(self) -> list[str]:
        """Plain-language notes on clamped eigenvalues."""
        out = []
        for side, roots in (("generated", self.g), ("reference", self.r)):
            if roots.clamped:
                out.append(
                    f"{side} covariance: {roots.clamped} of {roots.dim} eigenvalue(s) at or "
                    f"below round-off ({roots.tolerance:.3g}) treated as zero in the "
                    f"optimal-transport map (pseudo-inverse)"
                )
        return out

    def generated(self, x: ArrayLike, *, chunk: int = 8192) -> np.ndarray:
        """IF_g(x_i) for generated features (N, d): 2Δμᵀz + zᵀ(I − T)z − tr((I − T)Σ_g),
        z = x − μ_g. Returns float64 (N,)."""
        return self._values(x, self.g.mu, self._a_g, 2.0 * self.delta, self.trace_g, chunk)

    def reference(self, y: ArrayLike, *, chunk: int = 8192) -> np.ndarray:
        """IF_r(y_j) for reference features (M, d): −2Δμᵀz + zᵀ(I − T⁻¹)z − tr((I − T⁻¹)Σ_r),
        z = y − μ_r. Returns float64 (M,)."""
        return self._values(y, self.r.mu, self._a_r, -2.0 * self.delta, self.trace_r, chunk)

    def _values(
        self,
        x: ArrayLike,
        mu: torch.Tensor,
        a: torch.Tensor,
        lin: torch.Tensor,
        trace: float,
        chunk: int,
    ) -> np.ndarray:
        dev = a.device
        mu, lin = mu.to(dev), lin.to(dev)
        const = trace - self.trace_sqrt  # tr((I − T)Σ) = tr Σ − Σ s
        if isinstance(x, torch.Tensor):
            n = int(x.shape[0])
        else:
            x = np.asarray(x)
            n = int(x.shape[0])
        if x.ndim != 2 or x.shape[1] != self.g.dim:
            raise FidevalError(f"features: expected shape (N, {self.g.dim}), got {tuple(x.shape)}")
        out = np.empty(n, dtype=np.float64)
        for start in range(0, n, chunk):
            part = x[start : start + chunk]
            z, _ = as_float64(part, "features")
            z = z.to(dev) - mu
            quad = (z * z).sum(dim=1) - ((z @ a) ** 2).sum(dim=1)
            vals = z @ lin + quad - const
            out[start : start + len(vals)] = vals.cpu().numpy()
        return out
