"""The one Fréchet kernel: the Fréchet distance between two Gaussians, with diagnostics.

.. math::

    \\mathrm{FD} = \\lVert\\mu_1-\\mu_2\\rVert^2 + \\operatorname{tr}\\Sigma_1
        + \\operatorname{tr}\\Sigma_2 - 2\\operatorname{tr}\\big((\\Sigma_1\\Sigma_2)^{1/2}\\big)

in the squared units of the features. ``tr((Σ1Σ2)^½)`` is the sum of the square roots of
the eigenvalues of Σ1Σ2, which are real and non-negative for PSD Σ1, Σ2. fideval never
forms the non-symmetric product (``scipy.linalg.sqrtm`` does, and returns complex
round-off); it uses a symmetric PSD form instead:

* factor one covariance, Σ2 = F Fᵀ (Cholesky when positive definite; otherwise an
  eigendecomposition with round-off eigenvalues clamped to zero and their mass reported);
* then eig(Σ1Σ2) = eig(Fᵀ Σ1 F), a symmetric r×r matrix: eigenvalues only (``eigvalsh``).

With raw features (N < d), the trace term is exact: with A = (X − μ)/√(n−1), Σ = AᵀA,
so tr((Σ1Σ2)^½) = ‖A1 A2ᵀ‖_* (nuclear norm: sum of singular values).

Everything runs in float64 on the input tensor's device (CPU for numpy input and for
devices without float64, such as MPS). No ``+eps·I`` retry, no ``.real``, no silent
fallback: every route taken and everything clamped is written in :class:`FrechetResult`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import FidevalError, NonFiniteFeaturesError, NumericalError

ArrayLike = np.ndarray | torch.Tensor

_EPS64 = float(np.finfo(np.float64).eps)
# Eigenvalues below CLAMP_FACTOR·d·eps·λmax are round-off: clamped to zero (and reported).
CLAMP_FACTOR = 1.0
# Negative eigenvalues beyond INDEFINITE_FACTOR·d·eps_in·λmax mean the input is not PSD.
INDEFINITE_FACTOR = 100.0
# Relative asymmetry of a covariance beyond this is an error, not round-off.
SYMMETRY_RTOL = 1e-6

__all__ = [
    "FrechetReference",
    "FrechetResult",
    "frechet_details",
    "frechet_distance",
    "frechet_from_features",
]


@dataclass(frozen=True)
class FrechetResult:
    """A Fréchet distance with the facts needed to trust (or distrust) it.

    Attributes:
        value: the Fréchet distance (squared feature units), ≥ 0.
        mean_term: ‖μ1 − μ2‖².
        trace_term: tr Σ1 + tr Σ2 − 2 tr((Σ1Σ2)^½).
        trace_sqrt: tr((Σ1Σ2)^½).
        dim: feature dimension d.
        n1, n2: sample counts behind each side, when known.
        method: the route taken (``cholesky-eigvalsh``, ``eigh-eigvalsh``,
            ``features-nuclear``, ``features-factor-svd``).
        rank1, rank2: numerical rank of each covariance where it was computed (else None).
        clamped_eigenvalue_mass: sum of |λ| of the eigenvalues clamped to zero as
            round-off (covariance and product eigenvalues, squared units).
        clamped_fd_bound: upper bound on how much the clamping can have changed the value.
        clamped_to_zero: the computed value was in [−tol, 0) and was set to 0.
        warnings: plain-language warnings (rank deficiency, clamping, provenance).
    """

    value: float
    mean_term: float
    trace_term: float
    trace_sqrt: float
    dim: int
    method: str
    n1: int | None = None
    n2: int | None = None
    rank1: int | None = None
    rank2: int | None = None
    clamped_eigenvalue_mass: float = 0.0
    clamped_fd_bound: float = 0.0
    clamped_to_zero: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def __float__(self) -> float:
        return self.value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary; ``fid`` holds the value."""
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        out = {"fid": out.pop("value"), **out}
        return out


# --------------------------------------------------------------------------- input


def compute_device(device: torch.device) -> torch.device:
    """float64 is unavailable on MPS: statistics are computed on the CPU there."""
    return torch.device("cpu") if device.type == "mps" else device


def as_float64(x: ArrayLike, name: str) -> tuple[torch.Tensor, float]:
    """Return ``x`` as a float64 tensor on a float64-capable device, and the input's eps.

    The eps of the input dtype sets the round-off tolerances: a covariance stored in
    float32 carries float32 round-off even after conversion.
    """
    if isinstance(x, torch.Tensor):
        if not (x.dtype.is_floating_point or x.dtype in _INT_DTYPES):
            raise FidevalError(f"{name}: expected a real-valued tensor, got dtype {x.dtype}")
        eps = float(torch.finfo(x.dtype).eps) if x.dtype.is_floating_point else _EPS64
        eps = max(eps, _EPS64)
        dev = compute_device(x.device)
        return x.detach().to(device=dev, dtype=torch.float64), eps
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise FidevalError(f"{name}: expected a real-valued array, got dtype {arr.dtype}")
    eps = max(float(np.finfo(arr.dtype).eps), _EPS64) if arr.dtype.kind == "f" else _EPS64
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy()), eps


_INT_DTYPES = {torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool}


def _check_finite(t: torch.Tensor, name: str) -> None:
    if bool(torch.isfinite(t.sum())):  # one pass; the count only on the error path
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        count = int(bad.sum())
        raise NonFiniteFeaturesError(f"{name} contains {count} NaN/Inf value(s); expected finite")


def _symmetric(sigma: torch.Tensor, sigma_name: str) -> torch.Tensor:
    """``sigma`` if symmetric to round-off, its symmetric part if asymmetric within
    SYMMETRY_RTOL, else an error.

    A random probe first: (Σ − Σᵀ)v for a Gaussian v is zero only if Σ = Σᵀ (almost
    surely), and costs two matrix-vector products instead of a transposed d² pass.
    """
    if sigma.numel() == 0:
        return sigma
    gen = torch.Generator(device=sigma.device).manual_seed(0)
    v = torch.randn(sigma.shape[0], dtype=sigma.dtype, device=sigma.device, generator=gen)
    sv = sigma @ v
    probe = float((sv - sigma.mT @ v).abs().max())
    if probe <= 1e-12 * float(sv.abs().max()):
        return sigma  # symmetric to round-off; only one triangle is read downstream
    scale = float(sigma.abs().max())
    asym = float((sigma - sigma.mT).abs().max())
    if asym > SYMMETRY_RTOL * scale:
        raise FidevalError(
            f"{sigma_name} is not symmetric: max |Σ − Σᵀ| = {asym:.3g} "
            f"(relative {asym / scale:.3g}); expected a covariance matrix"
        )
    return 0.5 * (sigma + sigma.mT)


def validate_moments(
    mu: torch.Tensor, sigma: torch.Tensor, mu_name: str, sigma_name: str
) -> torch.Tensor:
    """Shape, finiteness and symmetry checks; returns the (symmetric) covariance.

    The names go into the messages (``sigma1``, or ``file.npz: key 'sigma'``).
    """
    if mu.ndim != 1:
        raise FidevalError(f"{mu_name}: expected a 1-D mean vector, got shape {tuple(mu.shape)}")
    d = mu.shape[0]
    if sigma.ndim != 2 or sigma.shape[0] != sigma.shape[1]:
        raise FidevalError(
            f"{sigma_name}: expected a square ({d}, {d}) covariance, got shape {tuple(sigma.shape)}"
        )
    if sigma.shape[0] != d:
        raise FidevalError(
            f"{sigma_name} is {tuple(sigma.shape)} but {mu_name} has d={d}; expected ({d}, {d})"
        )
    _check_finite(mu, mu_name)
    _check_finite(sigma, sigma_name)
    return _symmetric(sigma, sigma_name)


def _validate_moments(mu: torch.Tensor, sigma: torch.Tensor, side: str) -> torch.Tensor:
    return validate_moments(mu, sigma, f"mu{side}", f"sigma{side}")


# --------------------------------------------------------------------------- factor


@dataclass(frozen=True)
class _Factor:
    """Σ = F Fᵀ with F of shape (d, r)."""

    f: torch.Tensor
    method: str  # "cholesky" or "eigh"
    rank: int
    clamped_mass: float
    trace: float


def _clamp_spectrum(w: torch.Tensor, eps_in: float, what: str) -> tuple[torch.Tensor, float]:
    """Eigenvalues to keep (above round-off) and the clamped mass Σ|λ| of the rest.

    Below CLAMP_FACTOR·r·eps·λmax is round-off (clamped to 0); a negative eigenvalue
    beyond INDEFINITE_FACTOR·r·eps_in·λmax means the matrix is not PSD: an error.
    """
    r = w.shape[0]
    lam_max = float(w.abs().max())
    clamp_tol = CLAMP_FACTOR * r * _EPS64 * lam_max
    indefinite_tol = INDEFINITE_FACTOR * r * eps_in * lam_max
    w_min = float(w.min())
    if w_min < -indefinite_tol:
        raise NumericalError(
            f"{what} {w_min:.6g} (relative {w_min / lam_max:.3g}) beyond round-off "
            f"(tolerance {indefinite_tol:.3g}); expected a covariance matrix"
        )
    keep = w > clamp_tol
    return keep, float(w[~keep].abs().sum())


def _factor(sigma: torch.Tensor, eps_in: float, name: str, n: int | None) -> _Factor:
    d = sigma.shape[0]
    trace = float(torch.diagonal(sigma).sum())
    if d == 0:
        return _Factor(sigma.new_zeros((0, 0)), "cholesky", 0, 0.0, trace)
    # N ≤ d guarantees a singular covariance: skip the doomed Cholesky.
    if n is None or n > d:
        chol, info = torch.linalg.cholesky_ex(sigma)
        if int(info) == 0:
            piv = torch.diagonal(chol) ** 2
            # Tiny pivots mean Σ is numerically singular; its small directions are
            # round-off and must be clamped, which only the eigen route does.
            if float(piv.min()) > d * _EPS64 * float(piv.max()):
                return _Factor(chol, "cholesky", d, 0.0, trace)
    if n is not None and n - 1 + _RANGE_OVERSAMPLE < 0.75 * d:
        low_rank = _factor_low_rank(sigma, eps_in, name, n, trace)
        if low_rank is not None:
            return low_rank
    w, v = torch.linalg.eigh(sigma)
    keep, clamped_mass = _clamp_spectrum(
        w, eps_in, f"sigma{name} is not positive semidefinite: smallest eigenvalue"
    )
    f = v[:, keep] * torch.sqrt(w[keep])
    return _Factor(f, "eigh", int(keep.sum()), clamped_mass, trace)


_RANGE_OVERSAMPLE = 10


def _factor_low_rank(
    sigma: torch.Tensor, eps_in: float, name: str, n: int, trace: float
) -> _Factor | None:
    """Σ = FFᵀ for a covariance of n ≤ d samples (rank ≤ n − 1), without a d×d eigh.

    Its range is spanned by Y = ΣΩ for a Gaussian Ω with k = n − 1 + 10 columns, so with
    Q = qr(Y), Σ = Q (QᵀΣQ) Qᵀ and F = Q·V·√w from the k×k eigendecomposition of QᵀΣQ.
    The trace checks that nothing was lost: tr Σ − tr(QᵀΣQ) = tr((I − QQᵀ)Σ) ≥ 0 is the
    mass outside the subspace. Beyond round-off (e.g. N was wrong), returns None and the
    caller takes the full eigh route.
    """
    d = sigma.shape[0]
    k = min(d, n - 1 + _RANGE_OVERSAMPLE)
    gen = torch.Generator(device=sigma.device).manual_seed(0)
    omega = torch.randn(d, k, dtype=sigma.dtype, device=sigma.device, generator=gen)
    q, _ = torch.linalg.qr(sigma @ omega)
    b = q.mT @ sigma @ q
    w, v = torch.linalg.eigh(b)
    keep, clamped_mass = _clamp_spectrum(
        w, eps_in, f"sigma{name} is not positive semidefinite: smallest eigenvalue"
    )
    lam_max = float(w.abs().max()) if w.numel() else 0.0
    missing = trace - float(torch.diagonal(b).sum())
    if abs(missing) > CLAMP_FACTOR * d * d * _EPS64 * max(lam_max, 1e-300):
        return None
    f = q @ (v[:, keep] * torch.sqrt(w[keep]))
    return _Factor(f, "range-eigh", int(keep.sum()), clamped_mass + abs(missing), trace)


def _sqrt_eig_sum(m: torch.Tensor, eps_in: float, name: str) -> tuple[float, float, float]:
    """Σ √λ over the eigenvalues of a symmetric PSD matrix, round-off clamped.

    Returns (trace_sqrt, clamped_mass, clamped_sqrt_bound).
    """
    r = m.shape[0]
    if r == 0:
        return 0.0, 0.0, 0.0
    lam = torch.linalg.eigvalsh(m)  # reads one triangle: FᵀΣF is symmetric to round-off
    keep, clamped_mass = _clamp_spectrum(
        lam, eps_in, f"sigma{name} is not positive semidefinite: Σ1Σ2 has an eigenvalue"
    )
    clamped = lam[~keep]
    trace_sqrt = float(torch.sqrt(lam[keep]).sum())
    bound = float(torch.sqrt(clamped.clamp_min(0)).sum())
    return trace_sqrt, clamped_mass, bound


def _finish(
    mean_term: float,
    tr1: float,
    tr2: float,
    trace_sqrt: float,
    *,
    d: int,
    method: str,
    n1: int | None,
    n2: int | None,
    rank1: int | None,
    rank2: int | None,
    clamped_mass: float,
    clamped_sqrt_bound: float,
    extra_warnings: list[str] | None = None,
) -> FrechetResult:
    trace_term = tr1 + tr2 - 2.0 * trace_sqrt
    value = mean_term + trace_term
    warnings = list(extra_warnings or [])
    clamped_to_zero = False
    # Cancellation in tr Σ1 + tr Σ2 − 2 tr(·)^½ is the dominant error; √(d·eps) relative
    # is a generous bound on it, and anything below that is a bug, not round-off.
    tol = math.sqrt(max(d, 1) * _EPS64) * (tr1 + tr2 + mean_term) + 2.0 * clamped_sqrt_bound
    if value < 0.0:
        if value < -tol:
            raise NumericalError(
                f"Fréchet distance came out at {value:.6g}, below the round-off tolerance "
                f"−{tol:.3g}; this should not happen for valid covariances (please report)"
            )
        clamped_to_zero = True
        warnings.append(f"value {value:.3g} within round-off of 0 was clamped to 0")
        value = 0.0
    for side, n in (("1", n1), ("2", n2)):
        if n is not None and n <= d:
            warnings.append(
                f"N={n} ≤ d={d} on side {side}: the covariance is rank-deficient "
                f"(rank ≤ N−1); FID at this sample size is strongly biased upward and "
                f"comparable only at equal N (see `fideval estimate`)"
            )
    total = tr1 + tr2 + mean_term
    if clamped_sqrt_bound > 0 and total > 0 and 2 * clamped_sqrt_bound > 1e-6 * total:
        warnings.append(
            f"eigenvalues at round-off level were clamped to 0; the value may be off by "
            f"up to {2 * clamped_sqrt_bound:.3g}"
        )
    return FrechetResult(
        value=float(value),
        mean_term=float(mean_term),
        trace_term=float(trace_term),
        trace_sqrt=float(trace_sqrt),
        dim=d,
        method=method,
        n1=n1,
        n2=n2,
        rank1=rank1,
        rank2=rank2,
        clamped_eigenvalue_mass=float(clamped_mass),
        clamped_fd_bound=float(2 * clamped_sqrt_bound),
        clamped_to_zero=clamped_to_zero,
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- public


class FrechetReference:
    """A reference Gaussian (μ_r, Σ_r) factored once, Σ_r = F Fᵀ, for many comparisons.

    Each :meth:`compare` then costs one matrix product and one symmetric eigenvalue
    solve of size rank(Σ_r); :meth:`compare_features` one SVD of an n×r matrix (exact
    for n < d). This is the in-training case: the dataset side never changes.

    Args:
        mu: reference mean, shape (d,).
        sigma: reference covariance, shape (d, d), ddof=1.
        n: number of samples behind the reference, when known (M).
    """

    def __init__(self, mu: ArrayLike, sigma: ArrayLike, n: int | None = None) -> None:
        mu_t, _ = as_float64(mu, "mu2")
        sigma_t, eps = as_float64(sigma, "sigma2")
        sigma_t = _validate_moments(mu_t, sigma_t.to(mu_t.device), "2")
        self.mu = mu_t
        self.sigma = sigma_t
        self.n = n
        self.eps = eps
        self._factor = _factor(sigma_t, eps, "2", n)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @property
    def method(self) -> str:
        return self._factor.method

    def compare(self, mu: ArrayLike, sigma: ArrayLike, n: int | None = None) -> FrechetResult:
        """FD between (mu, sigma) [side 1] and the reference [side 2]."""
        mu_t, _ = as_float64(mu, "mu1")
        sigma_t, eps = as_float64(sigma, "sigma1")
        dev = self.mu.device
        mu_t, sigma_t = mu_t.to(dev), sigma_t.to(dev)
        sigma_t = _validate_moments(mu_t, sigma_t, "1")
        if mu_t.shape[0] != self.dim:
            raise FidevalError(
                f"dimension mismatch: side 1 has d={mu_t.shape[0]}, reference has d={self.dim}"
            )
        f = self._factor.f
        return self.compare_projected(
            mu_t, f.mT @ sigma_t @ f, float(torch.diagonal(sigma_t).sum()), n=n, eps=eps
        )

    @property
    def factor(self) -> torch.Tensor:
        """F with Σ_r = F Fᵀ, shape (d, r), float64."""
        return self._factor.f

    def compare_projected(
        self,
        mu: torch.Tensor,
        projected_sigma: torch.Tensor,
        trace_sigma: float,
        *,
        n: int | None = None,
        eps: float = _EPS64,
    ) -> FrechetResult:
        """FD from side 1 given in projected form: μ1, Fᵀ Σ1 F (r×r) and tr Σ1.

        This is all the kernel needs of Σ1, so callers that merge many statistics (the
        estimators' unions of groups) project each once and never form a d×d product.
        """
        trace_sqrt, mass, bound = _sqrt_eig_sum(projected_sigma, max(eps, self.eps), "1")
        diff = mu.to(self.mu.device) - self.mu
        return _finish(
            float(diff @ diff),
            float(trace_sigma),
            self._factor.trace,
            trace_sqrt,
            d=self.dim,
            method=f"{self._factor.method}-eigvalsh",
            n1=n,
            n2=self.n,
            rank1=None,
            rank2=self._factor.rank,
            clamped_mass=mass + self._factor.clamped_mass,
            clamped_sqrt_bound=bound,
        )

    def compare_features(self, x: ArrayLike) -> FrechetResult:
        """FD between the Gaussian fitted to features ``x`` (n, d) and the reference.

        Exact for any n: with A = (X − μ)/√(n−1) and Σ_r = FFᵀ,
        tr((Σ_x Σ_r)^½) = sum of singular values of A F (an n×r matrix).
        """
        xt, _ = as_float64(x, "features")
        xt = xt.to(self.mu.device)
        n, d = _check_features(xt, "features")
        if d != self.dim:
            raise FidevalError(f"dimension mismatch: features have d={d}, reference d={self.dim}")
        mu = xt.mean(dim=0)
        a = (xt - mu) / math.sqrt(n - 1)
        s = torch.linalg.svdvals(a @ self._factor.f)
        diff = mu - self.mu
        return _finish(
            float(diff @ diff),
            float((a * a).sum()),
            self._factor.trace,
            float(s.sum()),
            d=d,
            method="features-factor-svd",
            n1=n,
            n2=self.n,
            rank1=None,
            rank2=self._factor.rank,
            clamped_mass=self._factor.clamped_mass,
            clamped_sqrt_bound=0.0,
        )


def frechet_details(
    mu1: ArrayLike,
    sigma1: ArrayLike,
    mu2: ArrayLike,
    sigma2: ArrayLike,
    *,
    n1: int | None = None,
    n2: int | None = None,
) -> FrechetResult:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), with diagnostics.

    Σ2 is factored (Cholesky, or eigh with round-off clamped), then the eigenvalues of
    the symmetric Fᵀ Σ1 F give tr((Σ1Σ2)^½). ``n1``/``n2`` (sample counts) only inform
    the route and the warnings.
    """
    mu1_t, _ = as_float64(mu1, "mu1")
    mu2_t, _ = as_float64(mu2, "mu2")
    if mu1_t.ndim == 1 and mu2_t.ndim == 1 and mu1_t.shape != mu2_t.shape:
        raise FidevalError(
            f"dimension mismatch: mu1 has d={mu1_t.shape[0]}, mu2 has d={mu2_t.shape[0]}"
        )
    ref = FrechetReference(mu2_t, sigma2, n=n2)
    return ref.compare(mu1_t, sigma1, n=n1)


def frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, eps: float = 1e-6
) -> float:
    """Drop-in for ``pytorch_fid.fid_score.calculate_frechet_distance``.

    Same arguments and meaning (means and ddof=1 covariances, numpy arrays or torch
    tensors); returns a float. ``eps`` is accepted for signature compatibility and ignored:
    fideval never adds ``eps·I`` (see :func:`frechet_details` for the diagnostics).
    """
    del eps
    return frechet_details(mu1, sigma1, mu2, sigma2).value


def _check_features(x: torch.Tensor, name: str) -> tuple[int, int]:
    if x.ndim != 2:
        raise FidevalError(
            f"{name}: expected a 2-D (N, d) feature array, got shape {tuple(x.shape)}"
        )
    n, d = x.shape
    if n < 2:
        raise FidevalError(f"{name}: need at least 2 samples for a covariance, got N={n}")
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        rows = torch.nonzero(bad.any(dim=1)).flatten()
        shown = ", ".join(str(int(r)) for r in rows[:10])
        more = "" if rows.numel() <= 10 else f", … ({rows.numel()} rows in all)"
        raise NonFiniteFeaturesError(
            f"{name}: {int(bad.sum())} NaN/Inf value(s) in {rows.numel()} row(s) "
            f"(rows {shown}{more}); expected finite features"
        )
    return int(n), int(d)


def frechet_from_features(x1: ArrayLike, x2: ArrayLike) -> FrechetResult:
    """Fréchet distance between the Gaussians fitted (ddof=1) to two feature sets.

    When min(N1, N2) < d the trace term is computed exactly from the features:
    tr((Σ1Σ2)^½) = ‖A1 A2ᵀ‖_*, A = (X − μ)/√(n−1) — no d×d matrix is formed. Otherwise
    the covariances are formed and :func:`frechet_details` is used.
    """
    x1t, _ = as_float64(x1, "features1")
    x2t, _ = as_float64(x2, "features2")
    x2t = x2t.to(x1t.device)
    n1, d1 = _check_features(x1t, "features1")
    n2, d2 = _check_features(x2t, "features2")
    if d1 != d2:
        raise FidevalError(f"dimension mismatch: features1 has d={d1}, features2 has d={d2}")
    if min(n1, n2) >= d1:
        mu1, mu2 = x1t.mean(0), x2t.mean(0)
        s1 = torch.cov(x1t.mT)
        s2 = torch.cov(x2t.mT)
        return frechet_details(mu1, s1.reshape(d1, d1), mu2, s2.reshape(d1, d1), n1=n1, n2=n2)
    mu1, mu2 = x1t.mean(0), x2t.mean(0)
    a1 = (x1t - mu1) / math.sqrt(n1 - 1)
    a2 = (x2t - mu2) / math.sqrt(n2 - 1)
    s = torch.linalg.svdvals(a1 @ a2.mT)
    diff = mu1 - mu2
    return _finish(
        float(diff @ diff),
        float((a1 * a1).sum()),
        float((a2 * a2).sum()),
        float(s.sum()),
        d=d1,
        method="features-nuclear",
        n1=n1,
        n2=n2,
        rank1=None,
        rank2=None,
        clamped_mass=0.0,
        clamped_sqrt_bound=0.0,
    )
