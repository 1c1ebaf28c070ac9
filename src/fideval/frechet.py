"""The one Fréchet kernel: the Fréchet distance between two Gaussians, with diagnostics.

.. math::

    \\mathrm{FD} = \\lVert\\mu_1-\\mu_2\\rVert^2 + \\operatorname{tr}\\Sigma_1
        + \\operatorname{tr}\\Sigma_2 - 2\\operatorname{tr}\\big((\\Sigma_1\\Sigma_2)^{1/2}\\big)

in the squared units of the features. ``tr((Σ1Σ2)^½)`` is the sum of the square roots of
the eigenvalues of Σ1Σ2, which are real and non-negative for PSD Σ1, Σ2. fideval never
forms the non-symmetric product (``scipy.linalg.sqrtm`` does, and returns complex
round-off). Two routes:

* **Features route** (:func:`frechet_from_features`, any N): with A = (X − μ)/√(n−1) and
  R its QR triangle, tr((Σ1Σ2)^½) = ‖R1 R2ᵀ‖_*; the singular values are the square roots
  themselves, so small eigenvalues of Σ1Σ2 keep their digits. Near-identical inputs use
  the Procrustes residual, free of cancellation.
* **Statistics route** (:func:`frechet_details`, :class:`FrechetReference`): factor
  Σ2 = F Fᵀ (Cholesky when positive definite, else a pivoted Cholesky or an
  eigendecomposition), then eig(Σ1Σ2) = eig(Fᵀ Σ1 F), a symmetric r×r matrix
  (``eigvalsh``). With N known, a covariance has rank ≤ N − 1: exactly the structural
  zero eigenvalues are removed and every other one is kept. With N unknown and Σ2
  singular, Σ1 is factored the same way, Σ1 = G Gᵀ, and eig(Σ1Σ2) is read from the
  smaller Gram matrix of C = GᵀF. Tolerances follow a backward-error model (see
  "spectra" below): eigenvalues of FᵀΣ1F are known to (d·eps + u1 + u2)·‖Σ1‖·‖Σ2‖, with
  u the machine epsilon of each covariance's stored dtype.

Every route is scale-equivariant, FD(c·x, c·y) = c²·FD(x, y), and computes on inputs
divided by a power of two (exact) that brings them to unit size ("scale" below): any
finite input gives a finite value, or a :class:`~fideval.errors.FidevalError` when the
value itself is beyond float64.

Everything runs in float64 on the input tensor's device (CPU for numpy input and for
devices without float64, such as MPS). No ``+eps·I`` retry, no ``.real``, no silent
fallback: every route taken and everything removed is written in :class:`FrechetResult`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ._arrays import ArrayLike, as_float64, check_finite, check_finite_rows
from .errors import FidevalError, NumericalError

_EPS64 = float(np.finfo(np.float64).eps)
# A negative eigenvalue beyond INDEFINITE_FACTOR round-off units means the input is not PSD.
INDEFINITE_FACTOR = 100.0
# Relative asymmetry of a covariance beyond this is an error, not round-off.
SYMMETRY_RTOL = 1e-6
# Features route: when FD < CANCELLATION_RATIO·(tr Σ1 + tr Σ2 + ‖Δμ‖²), the difference
# tr Σ1 + tr Σ2 − 2‖·‖_* cancels; the Procrustes residual is used instead.
CANCELLATION_RATIO = 1e-4


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
            ``range-eigh-eigvalsh``, ``pivoted-cholesky-eigvalsh``, ``<factor>-gram``
            (both sides factored: N unknown and Σ2 singular), ``features-nuclear``,
            ``features-procrustes``, ``features-factor-svd``).
        rank1, rank2: rank of each covariance (from N, or estimated; None if unknown).
        clamped_eigenvalue_mass: sum of |λ| of the eigenvalues set to zero that were not
            structural zeros (negative round-off, or below the threshold when N is
            unknown): covariance eigenvalues in squared units, product ones in units⁴.
        clamped_fd_bound: upper bound on how much setting them to zero can have changed
            the value: 2·Σ√|λ| over the product's, plus 2·√(k·‖Σ1‖·Σ|w|) over the k
            covariance eigenvalues w removed by a threshold. Structural zeros (rank known
            from N) are exact and add nothing.
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


# --------------------------------------------------------------------------- scale
#
# FD(c·x, c·y) = c²·FD(x, y). Each route divides its inputs by a power of two 2^k
# (covariances by 4^k) chosen so that their largest entry is below 1, computes there, and
# multiplies the result by 4^k. Powers of two scale floating-point numbers exactly, so the
# result is bit-for-bit the same as without scaling whenever nothing overflows — and now
# nothing can: no product of two covariances, no sum of squares of 1e200-sized features
# reaches LAPACK. The mean term ‖μ1 − μ2‖² gets its own power of two (a mean of 1e200
# with a spread of 1 must not flush the covariances to zero). A value beyond float64 is a
# FidevalError naming its magnitude, never inf.

# Exponent range: 4^−k must stay a normal float, and tiny inputs gain nothing from being
# scaled up further (their products cannot underflow below 2^−1920 anyway).
_MIN_EXP, _MAX_EXP = -480, 512


def _exponent(magnitude: float) -> int:
    """k with magnitude < 2^k (0 for magnitude 0), clamped to the usable range."""
    if not magnitude > 0.0:
        return 0
    return min(max(math.frexp(magnitude)[1], _MIN_EXP), _MAX_EXP)


def _cov_exponent(sigma: torch.Tensor) -> int:
    """k with max|Σ| < 4^k: Σ/4^k has entries below 1 (|Σ_ij| ≤ max diag for PSD Σ)."""
    if sigma.numel() == 0:
        return 0
    return (_exponent(max(float(sigma.max()), -float(sigma.min()))) + 1) // 2


def _times_pow2(t: torch.Tensor, e: int) -> torch.Tensor:
    """t·2^e, exact (two factors so that each one is a normal float)."""
    if e == 0:
        return t
    half = e // 2
    return t * math.ldexp(1.0, half) * math.ldexp(1.0, e - half)


def _overflow(what: str, exp10: float) -> FidevalError:
    return FidevalError(
        f"{what} is about 1e{exp10:.0f}, which overflows float64 (max ≈ 1.8e308); "
        f"rescale the features (FD scales as the square of the feature scale)"
    )


def _unscale(x: float, k: int, what: str, units: int = 2) -> float:
    """x·2^(units·k): a value computed on inputs divided by 2^k, in the input's units.

    Raises FidevalError when the result is beyond float64 (≈ 1.8e308).
    """
    try:
        return math.ldexp(x, units * k)
    except OverflowError:
        raise _overflow(what, math.log10(abs(x)) + units * k * math.log10(2.0)) from None


def _mean_term(mu1: torch.Tensor, mu2: torch.Tensor) -> float:
    """‖μ1 − μ2‖² (squared units), formed on means divided by a power of two."""
    if mu1.numel() == 0:
        return 0.0
    k = _exponent(max(float(mu1.abs().max()), float(mu2.abs().max())))
    diff = _times_pow2(mu1, -k) - _times_pow2(mu2, -k)
    return _unscale(float(diff @ diff), k, "the mean term ‖μ1 − μ2‖²", units=2)


# --------------------------------------------------------------------------- input


def _symmetric(sigma: torch.Tensor, sigma_name: str) -> torch.Tensor:
    """``sigma`` if symmetric to round-off, its symmetric part if asymmetric within
    SYMMETRY_RTOL, else an error.

    A random probe first: (Σ − Σᵀ)v for a Gaussian v is zero only if Σ = Σᵀ (almost
    surely), and costs two matrix-vector products instead of a transposed d² pass (a
    probe that overflows, for a huge Σ, falls through to the full comparison).
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
    return 0.5 * sigma + 0.5 * sigma.mT


def validate_moments(
    mu: torch.Tensor, sigma: torch.Tensor, mu_name: str, sigma_name: str
) -> torch.Tensor:
    """Shape, finiteness and symmetry checks; returns the (symmetric) covariance.

    The names go into the messages (``sigma1``, or ``file.npz: key 'sigma'``).
    """
    if mu.ndim != 1:
        raise FidevalError(f"{mu_name}: expected a 1-D mean vector, got shape {tuple(mu.shape)}")
    d = mu.shape[0]
    if d == 0:
        raise FidevalError(f"{mu_name} has zero width (d = 0); expected d ≥ 1")
    if sigma.ndim != 2 or sigma.shape[0] != sigma.shape[1]:
        raise FidevalError(
            f"{sigma_name}: expected a square ({d}, {d}) covariance, got shape {tuple(sigma.shape)}"
        )
    if sigma.shape[0] != d:
        raise FidevalError(
            f"{sigma_name} is {tuple(sigma.shape)} but {mu_name} has d={d}; expected ({d}, {d})"
        )
    check_finite(mu, mu_name)
    check_finite(sigma, sigma_name)
    return _symmetric(sigma, sigma_name)


def _validate_moments(mu: torch.Tensor, sigma: torch.Tensor, side: str) -> torch.Tensor:
    return validate_moments(mu, sigma, f"mu{side}", f"sigma{side}")


# --------------------------------------------------------------------------- spectra
#
# Round-off model. A symmetric eigensolver returns the eigenvalues of Σ + E with
# ‖E‖₂ ≲ d·eps·‖Σ‖₂, and a covariance stored in a dtype with machine epsilon u carries a
# perturbation of the same kind with ‖E‖₂ ≲ u·‖Σ‖₂. So every eigenvalue of Σ is known to
# an absolute accuracy of
#
#     roundoff(Σ) = (d·eps + u)·‖Σ‖₂                                    (squared units)
#
# and every eigenvalue of the projected product FᵀΣ1F (Σ2 = FFᵀ, ‖F‖₂² = ‖Σ2‖₂) to
#
#     roundoff(FᵀΣ1F) = (d·eps + u1 + u2)·‖Σ1‖₂·‖Σ2‖₂                    (units⁴)
#
# — the scale of the product's round-off is ‖Σ1‖·‖Σ2‖, which can be far above the
# product's own largest eigenvalue (spectra reversed between the two sides). A negative
# eigenvalue beyond INDEFINITE_FACTOR·roundoff is an error; anything above is input.
#
# Rank policy: when N is known, a covariance has rank ≤ N − 1, so exactly the smallest
# d − (N − 1) eigenvalues are structural zeros and are removed; every other eigenvalue is
# kept (√max(λ, 0)) however small it is. When N is unknown and the covariance is singular
# (its Cholesky factorization fails or has round-off pivots), its rank is estimated as
# the number of pivots of a pivoted Cholesky factorization above roundoff(Σ) (LAPACK
# ``dpstrf``; each pivot is the largest remaining diagonal, so what is left has no
# eigenvalue above (d − r)·roundoff), or, without SciPy or off the CPU, as the number of
# eigenvalues above roundoff(Σ): a threshold, reported as a warning.


@dataclass(frozen=True)
class _Spectrum:
    """What the rank policy kept of a spectrum, and what it removed."""

    keep: torch.Tensor  # boolean mask over the eigenvalues
    structural: int  # structural zeros removed (rank known)
    clamped_mass: float  # Σ|λ| over the other removed eigenvalues
    clamped_count: int
    notes: tuple[str, ...]


def _apply_rank_policy(
    w: torch.Tensor, *, roundoff: float, cap: int | None, what: str, rank_source: str
) -> _Spectrum:
    """Which eigenvalues ``w`` (ascending) to keep, given the rank ``cap`` when known.

    Raises :class:`NumericalError` when an eigenvalue is negative beyond
    INDEFINITE_FACTOR·roundoff.
    """
    r = int(w.shape[0])
    if r == 0:
        return _Spectrum(torch.zeros(0, dtype=torch.bool, device=w.device), 0, 0.0, 0, ())
    limit = INDEFINITE_FACTOR * roundoff
    w_min = float(w.min())
    if w_min < -limit:
        scale = float(w.abs().max())
        raise NumericalError(
            f"{what} is not positive semidefinite: eigenvalue {w_min:.6g} (relative "
            f"{w_min / scale:.3g}) is below −{limit:.3g}, {INDEFINITE_FACTOR:g}× its round-off "
            f"level; expected a covariance matrix"
        )
    notes: list[str] = []
    if cap is None:
        keep = w > roundoff
        removed = ~keep
        return _Spectrum(keep, 0, float(w[removed].abs().sum()), int(removed.sum()), tuple(notes))
    cap = max(0, min(cap, r))
    structural = r - cap
    keep = torch.zeros(r, dtype=torch.bool, device=w.device)
    keep[structural:] = w[structural:] > 0
    clamped = ~keep
    clamped[:structural] = False
    if structural and float(w[:structural].max()) > limit:
        # More eigenvalues above round-off than the rank allows: keep them, say so.
        extra = w[:structural] > roundoff
        keep[:structural] = extra
        notes.append(
            f"{what} has {int(extra.sum())} more eigenvalue(s) above round-off than its rank "
            f"{cap} ({rank_source}) allows; they were kept — check that N is right and that "
            f"the covariance is ddof=1 over N samples"
        )
        structural -= int(extra.sum())
    return _Spectrum(
        keep, structural, float(w[clamped].abs().sum()), int(clamped.sum()), tuple(notes)
    )


def _roundoff(norm2: float, d: int, eps_in: float) -> float:
    """Absolute accuracy of the eigenvalues of a d×d matrix of norm ``norm2``."""
    return (max(d, 1) * _EPS64 + eps_in) * norm2


def _known_rank(n: int | None, d: int) -> int | None:
    """Rank bound from the sample count: a covariance of N samples has rank ≤ N − 1."""
    return None if n is None else min(d, max(n - 1, 0))


def _pd_cholesky(sigma: torch.Tensor) -> torch.Tensor | None:
    """Cholesky factor when Σ is positive definite beyond round-off, else None.

    Tiny pivots mean Σ is numerically singular: its small directions are round-off, and
    only a rank-revealing factorization can tell them apart. The leading half block is
    factored first: its pivots are Σ's first pivots, so when they already fail the test
    (any covariance of fewer than d/2 samples) Σ does too, found at ⅛ of the work.
    """
    d = sigma.shape[0]
    h = d // 2
    if h >= _PROBE_MIN and _roundoff_pivots(torch.linalg.cholesky_ex(sigma[:h, :h]), d):
        return None
    factored = torch.linalg.cholesky_ex(sigma)
    return None if _roundoff_pivots(factored, d) else factored[0]


# Matrices at least twice this size get the leading-block probe of _pd_cholesky.
_PROBE_MIN = 256


def _roundoff_pivots(factored: tuple[torch.Tensor, torch.Tensor], d: int) -> bool:
    """Whether a ``cholesky_ex`` result failed, or has a pivot² ≤ d·eps·(largest pivot²)."""
    chol, info = factored
    if int(info) != 0:
        return True
    piv = torch.diagonal(chol) ** 2
    return float(piv.min()) <= d * _EPS64 * float(piv.max())


# --------------------------------------------------------------------------- factor


@dataclass(frozen=True)
class _Factor:
    """Σ = F Fᵀ with F of shape (d, r), and what the rank policy removed."""

    f: torch.Tensor
    method: str  # "cholesky", "pivoted-cholesky", "eigh" or "range-eigh"
    rank: int
    trace: float
    norm2: float  # ‖Σ‖₂ (exact on the eigen routes, the Frobenius bound otherwise)
    clamped_mass: float
    clamped_count: int
    structural: int
    notes: tuple[str, ...] = ()

    @property
    def square(self) -> bool:
        """F is d×d and invertible: FᵀΣ1F is congruent to Σ1 (same rank, Sylvester)."""
        return self.rank == self.f.shape[0] == self.f.shape[1]

    def times_pow2(self, e: int) -> _Factor:
        """The factor of Σ·4^e: F·2^e, with the squared quantities times 4^e."""
        if e == 0:
            return self
        what = "the reference covariance at this power of two"
        return replace(
            self,
            f=_times_pow2(self.f, e),
            trace=_unscale(self.trace, e, what),
            norm2=_unscale(self.norm2, e, what),
            clamped_mass=_unscale(self.clamped_mass, e, what),
        )


def _estimated_note(what: str, rank: int, d: int, how: str) -> str:
    return (
        f"{what}: N unknown and the covariance is singular; its rank ({rank} of {d}) was "
        f"estimated from the {how} above round-off — give N (n1/n2, or a statistics file "
        f"with 'n') for the exact treatment"
    )


def _factor(
    sigma: torch.Tensor, eps_in: float, name: str, n: int | None, *, try_cholesky: bool = True
) -> _Factor:
    """Σ = FFᵀ under the rank policy: Cholesky, pivoted Cholesky, range finder or eigh.

    ``try_cholesky=False`` skips the plain Cholesky attempt when it is likely doomed
    (N unknown and the other side singular): the pivoted factorization serves either way.
    """
    d = sigma.shape[0]
    trace = float(torch.diagonal(sigma).sum())
    cap = _known_rank(n, d)
    what = f"sigma{name}"
    if (cap is None and try_cholesky) or cap == d:
        chol = _pd_cholesky(sigma)
        if chol is not None:
            return _Factor(chol, "cholesky", d, trace, float(torch.linalg.norm(sigma)), 0.0, 0, 0)
    if cap is None:
        pivoted = _factor_pivoted(sigma, eps_in, what, trace)
        if pivoted is not None:
            return pivoted
    if cap is not None and cap + _RANGE_OVERSAMPLE < 0.75 * d:
        low_rank = _factor_low_rank(sigma, eps_in, what, cap, trace)
        if low_rank is not None:
            return low_rank
    return _factor_eigh(sigma, eps_in, what, cap, trace, n)


def _factor_eigh(
    sigma: torch.Tensor, eps_in: float, what: str, cap: int | None, trace: float, n: int | None
) -> _Factor:
    """F = V·√w from the full eigendecomposition, under the rank policy."""
    d = sigma.shape[0]
    w, v = torch.linalg.eigh(sigma)
    norm2 = float(w.abs().max())
    spec = _apply_rank_policy(
        w,
        roundoff=_roundoff(norm2, d, eps_in),
        cap=None if cap == d else cap,
        what=what,
        rank_source=f"N={n}",
    )
    notes = spec.notes
    rank = int(spec.keep.sum())
    if cap is None and spec.clamped_count:
        notes += (_estimated_note(what, rank, d, "eigenvalues"),)
    f = v[:, spec.keep] * torch.sqrt(w[spec.keep])
    return _Factor(
        f,
        "eigh",
        rank,
        trace,
        norm2,
        spec.clamped_mass,
        spec.clamped_count,
        spec.structural,
        notes,
    )


def _lapack_pstrf() -> Any:
    """SciPy's LAPACK ``dpstrf`` (pivoted Cholesky), or None without SciPy."""
    try:
        from scipy.linalg.lapack import dpstrf
    except ImportError:  # pragma: no cover - SciPy ships with every test environment
        return None
    return dpstrf


def _factor_pivoted(sigma: torch.Tensor, eps_in: float, what: str, trace: float) -> _Factor | None:
    """Σ = FFᵀ + S by a pivoted Cholesky factorization stopped at round-off pivots.

    ``dpstrf`` picks as each pivot the largest remaining diagonal of the Schur complement
    and stops when it falls to roundoff(Σ) = (d·eps + u)·‖Σ‖_F: F = P L has r columns
    (the rank estimate) and the remainder S = Σ − FFᵀ on the other d − r indices has
    every diagonal ≤ roundoff. One O(d·r²) factorization gives both the rank and the
    factor. S is checked: a PSD remainder with such a diagonal has ‖S‖_F ≤ (d − r)·
    roundoff; a larger one means Σ is indefinite beyond round-off, and None sends the
    caller to the eigen route, which names the offending eigenvalue. Its removed mass,
    reported as clamped, is bounded by √(d − r)·‖S‖_F ≥ Σ|λ(S)|. None too off the CPU or
    without SciPy.
    """
    dpstrf = _lapack_pstrf()
    if dpstrf is None or sigma.device.type != "cpu":
        return None
    d = sigma.shape[0]
    norm = float(torch.linalg.norm(sigma))
    tol = _roundoff(norm, d, eps_in)
    c, piv, rank, info = dpstrf(sigma.numpy(), tol=tol, lower=1)
    if info < 0:  # pragma: no cover - an argument error is a bug
        return None
    rank = int(rank)
    order = torch.from_numpy(piv.astype(np.int64) - 1)
    f = sigma.new_zeros((d, rank))
    f[order] = torch.tril(torch.from_numpy(c[:, :rank]))
    rest = order[rank:]
    remainder = sigma[rest][:, rest] - f[rest] @ f[rest].mT
    size = float(torch.linalg.norm(remainder)) if rest.numel() else 0.0
    if size > (d - rank) * tol:
        return None
    notes = () if rank == d else (_estimated_note(what, rank, d, "pivots of a pivoted Cholesky"),)
    return _Factor(
        f,
        "pivoted-cholesky",
        rank,
        trace,
        norm,
        math.sqrt(d - rank) * size,
        d - rank,
        0,
        notes,
    )


_RANGE_OVERSAMPLE = 10


def _factor_low_rank(
    sigma: torch.Tensor, eps_in: float, what: str, rank: int, trace: float
) -> _Factor | None:
    """Σ = FFᵀ for a covariance of known rank ≤ ``rank`` ≪ d, without a d×d eigh.

    Its range is spanned by Y = ΣΩ for a Gaussian Ω with k = rank + 10 columns, so with
    Q = qr(Y), Σ = Q (QᵀΣQ) Qᵀ and F = Q·V·√w from the k×k eigendecomposition of QᵀΣQ.
    The trace checks that nothing was lost: tr Σ − tr(QᵀΣQ) = tr((I − QQᵀ)Σ) ≥ 0 is the
    mass outside the subspace. Beyond round-off (e.g. N was wrong), returns None and the
    caller takes the full eigh route.
    """
    d = sigma.shape[0]
    k = min(d, rank + _RANGE_OVERSAMPLE)
    gen = torch.Generator(device=sigma.device).manual_seed(0)
    omega = torch.randn(d, k, dtype=sigma.dtype, device=sigma.device, generator=gen)
    q, _ = torch.linalg.qr(sigma @ omega)
    b = q.mT @ sigma @ q
    w, v = torch.linalg.eigh(b)
    norm2 = float(w.abs().max()) if w.numel() else 0.0
    roundoff = _roundoff(norm2, d, eps_in)
    missing = trace - float(torch.diagonal(b).sum())
    if abs(missing) > d * roundoff:
        return None
    spec = _apply_rank_policy(w, roundoff=roundoff, cap=rank, what=what, rank_source="N − 1")
    f = q @ (v[:, spec.keep] * torch.sqrt(w[spec.keep]))
    return _Factor(
        f,
        "range-eigh",
        int(spec.keep.sum()),
        trace,
        norm2,
        spec.clamped_mass,
        spec.clamped_count,
        spec.structural + (d - k),
        spec.notes,
    )


@dataclass(frozen=True)
class _Side1:
    """What the kernel needs of side 1 besides its projection FᵀΣ1F."""

    trace: float
    norm2: float  # ‖Σ1‖₂ or an upper bound (Frobenius norm, trace)
    eps: float
    n: int | None
    rank: int | None  # known or estimated rank of Σ1; None: unknown
    notes: tuple[str, ...] = ()
    clamped_mass: float = 0.0  # of Σ1's own factorization (gram route), squared units
    clamped_count: int = 0


# Below this half-size the blocked products fall back to dense GEMMs.
_BLOCK_MIN = 192


def _times_lower(a: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """a·L for a lower-triangular L (k×k): k²·m flops instead of 2k²·m.

    With L = [[L11, 0], [L21, L22]]: a·L = [a1·L11 + a2·L21, a2·L22], recursively.
    """
    k = low.shape[0]
    h = k // 2
    if h < _BLOCK_MIN:
        return a @ low
    out = a.new_empty((a.shape[0], k))
    out[:, :h] = _times_lower(a[:, :h], low[:h, :h]).addmm_(a[:, h:], low[h:, :h])
    out[:, h:] = _times_lower(a[:, h:], low[h:, h:])
    return out


def _lower_t_times(low: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Lᵀ·b for a lower-triangular L: Lᵀb = [L11ᵀb1 + L21ᵀb2, L22ᵀb2], recursively."""
    k = low.shape[0]
    h = k // 2
    if h < _BLOCK_MIN:
        return low.mT @ b
    out = b.new_empty((k, b.shape[1]))
    out[:h] = _lower_t_times(low[:h, :h], b[:h]).addmm_(low[h:, :h].mT, b[h:])
    out[h:] = _lower_t_times(low[h:, h:], b[h:])
    return out


def _lower_congruence(
    sigma: torch.Tensor, chol: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The lower triangle of Lᵀ Σ L for a lower-triangular L (what ``eigvalsh`` reads).

    Σ is symmetric, which the 2×2 block form uses as LAPACK's ``sygst`` does. With
    L = [[L11, 0], [L21, L22]], X = Σ21 L11 and Y = Σ22 L21:

        M21 = L22ᵀ (X + Y),
        M11 = L11ᵀ Σ11 L11 + Z + Zᵀ  with  Z = L21ᵀ (X + Y/2),
        M22 = L22ᵀ Σ22 L22,

    the diagonal blocks recursively (Z + Zᵀ = L21ᵀΣ21L11 + L11ᵀΣ12L21 + L21ᵀΣ22L21).
    About d³ flops against 4·d³ for two dense products; the strict upper triangle is
    not meaningful. ``out`` (d×d, zeroed) receives the result.
    """
    n = chol.shape[0]
    if out is None:
        out = sigma.new_zeros((n, n))
    h = n // 2
    if h < _BLOCK_MIN:
        return out.copy_(chol.mT @ sigma @ chol)
    l11, l21, l22 = chol[:h, :h], chol[h:, :h], chol[h:, h:]
    x = _times_lower(sigma[h:, :h], l11)
    y = sigma[h:, h:] @ l21
    z = l21.mT @ torch.add(x, y, alpha=0.5)
    out[h:, :h] = _lower_t_times(l22, x.add_(y))
    _lower_congruence(sigma[:h, :h], l11, out[:h, :h]).add_(z).add_(z.mT)
    _lower_congruence(sigma[h:, h:], l22, out[h:, h:])
    return out


def _project(fac: _Factor, sigma: torch.Tensor) -> torch.Tensor:
    """FᵀΣF (r×r); only its lower triangle is meaningful after Cholesky."""
    if fac.method == "cholesky":
        return _lower_congruence(sigma, fac.f)
    return fac.f.mT @ sigma @ fac.f


def _eigvals_lower(m: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues of the symmetric m, reading its lower triangle only."""
    if m.shape[0] == 0:
        return m.new_zeros(0)
    return torch.linalg.eigvalsh(m, UPLO="L")


def _sqrt_eig_sum(
    lam: torch.Tensor, roundoff: float, cap: int | None
) -> tuple[float, _Spectrum, float]:
    """Σ √λ over the ascending eigenvalues ``lam`` of the PSD FᵀΣ1F, under the rank policy.

    Returns (trace_sqrt, spectrum, Σ√|λ| over the non-structural eigenvalues removed).
    """
    r = lam.shape[0]
    if r == 0:
        empty = _apply_rank_policy(lam, roundoff=0.0, cap=0, what="", rank_source="")
        return 0.0, empty, 0.0
    spec = _apply_rank_policy(
        lam,
        roundoff=roundoff,
        cap=cap,
        what="sigma1 (through Σ1Σ2)",
        rank_source="min(rank Σ1, rank Σ2)",
    )
    trace_sqrt = float(torch.sqrt(lam[spec.keep]).sum())
    removed = ~spec.keep
    if cap is not None:
        removed[: r - min(cap, r)] = False
    bound = float(torch.sqrt(lam[removed].abs()).sum())
    return trace_sqrt, spec, bound


@dataclass(frozen=True)
class _TracePart:
    """tr((Σ1Σ2)^½) and its diagnostics, in units divided by 4^k (units⁴: 16^k)."""

    trace_sqrt: float
    tr1: float
    tr2: float
    rank1: int | None
    rank2: int
    method: str
    product_mass: float  # Σ|λ| of the product's clamped eigenvalues (units⁴)
    cov_mass: float  # Σ|w| of the covariances' clamped eigenvalues (squared units)
    sqrt_bound: float  # 2·(…): clamped_fd_bound (squared units)
    notes: tuple[str, ...]


def _trace_part(
    fac: _Factor, lam: torch.Tensor, side: _Side1, d: int, eps2: float, method: str
) -> _TracePart:
    """Assemble the trace part from the product's eigenvalues ``lam`` and side 1's rank."""
    roundoff = _roundoff(side.norm2 * fac.norm2, d, side.eps + eps2)
    cap = None if side.rank is None else min(side.rank, fac.rank)
    trace_sqrt, spec, bound = _sqrt_eig_sum(lam, roundoff, cap)
    # Eigenvalues of a covariance removed by a threshold (not structural zeros) can move
    # tr((Σ1Σ2)^½) by at most √(k·‖Σ_other‖·Σ|w|) (subadditivity of tr √·).
    if fac.clamped_count:
        bound += math.sqrt(fac.clamped_count * side.norm2 * fac.clamped_mass)
    if side.clamped_count:
        bound += math.sqrt(side.clamped_count * fac.norm2 * side.clamped_mass)
    return _TracePart(
        trace_sqrt=trace_sqrt,
        tr1=side.trace,
        tr2=fac.trace,
        rank1=side.rank,
        rank2=fac.rank,
        method=method,
        product_mass=spec.clamped_mass,
        cov_mass=fac.clamped_mass + side.clamped_mass,
        sqrt_bound=2.0 * bound,
        notes=fac.notes + side.notes + spec.notes,
    )


def _trace_part_of_covariance(
    fac: _Factor, sigma1: torch.Tensor, eps1: float, eps2: float, n1: int | None
) -> _TracePart:
    """tr((Σ1Σ2)^½) for Σ2 = FFᵀ (factored) and Σ1 (both divided by the same 4^k).

    * N1 known: eig(FᵀΣ1F), its structural zeros removed (cap min(N1 − 1, rank Σ2)).
    * N1 unknown, F square: FᵀΣ1F is congruent to Σ1, so when all its eigenvalues are
      above round-off Σ1 is positive definite — its rank read from the eigenvalues
      already computed. Otherwise Σ1's rank comes from its own factorization.
    * N1 unknown, Σ2 singular: Σ1 = GGᵀ too (one factorization gives its rank and G),
      and eig(Σ1Σ2) = eig of the smaller Gram matrix of C = GᵀF (min(r1, r2) square).
    """
    d = sigma1.shape[0]
    side = _Side1(
        trace=float(torch.diagonal(sigma1).sum()),
        norm2=float(torch.linalg.norm(sigma1)),
        eps=eps1,
        n=n1,
        rank=_known_rank(n1, d),
    )
    method = f"{fac.method}-eigvalsh"
    if side.rank is not None:
        return _trace_part(fac, _eigvals_lower(_project(fac, sigma1)), side, d, eps2, method)
    if fac.square:
        lam = _eigvals_lower(_project(fac, sigma1))
        roundoff = _roundoff(side.norm2 * fac.norm2, d, eps1 + eps2)
        if int((lam > roundoff).sum()) == d:
            return _trace_part(fac, lam, replace(side, rank=d), d, eps2, method)
        own = _factor(sigma1, eps1, "1", None)
        side = replace(side, rank=own.rank, notes=own.notes)
        return _trace_part(fac, lam, side, d, eps2, method)
    # Σ2 singular: Σ1 usually is too (same protocol), so skip its doomed Cholesky attempt.
    own = _factor(sigma1, eps1, "1", None, try_cholesky=False)
    c = own.f.mT @ fac.f
    gram = c @ c.mT if c.shape[0] <= c.shape[1] else c.mT @ c
    side = replace(
        side,
        norm2=own.norm2,
        rank=own.rank,
        notes=own.notes,
        clamped_mass=own.clamped_mass,
        clamped_count=own.clamped_count,
    )
    return _trace_part(fac, _eigvals_lower(gram), side, d, eps2, f"{fac.method}-gram")


def _finish(
    mean_term: float,
    part: _TracePart,
    *,
    d: int,
    exponent: int,
    n1: int | None,
    n2: int | None,
    trace_value: float | None = None,
) -> FrechetResult:
    """The result in the input's units, from a trace part computed on inputs / 4^k.

    ``mean_term`` is already in the input's units; ``trace_value`` (scaled) replaces
    tr1 + tr2 − 2·trace_sqrt when computed without cancellation (Procrustes).
    """
    k = exponent
    scaled_trace_term = part.tr1 + part.tr2 - 2.0 * part.trace_sqrt
    if trace_value is None:
        trace_value = scaled_trace_term
    tr1 = _unscale(part.tr1, k, "tr Σ1")
    tr2 = _unscale(part.tr2, k, "tr Σ2")
    trace_sqrt = _unscale(part.trace_sqrt, k, "tr((Σ1Σ2)^½)")
    trace_term = _unscale(scaled_trace_term, k, "the trace term")
    clamped_sqrt_bound = _unscale(part.sqrt_bound, k, "the clamping bound")
    trace_part = _unscale(trace_value, k, "the Fréchet distance")
    value = mean_term + trace_part
    if math.isinf(value):
        raise _overflow(
            "the Fréchet distance", math.log10(0.5 * mean_term + 0.5 * trace_part) + math.log10(2.0)
        )
    warnings = list(part.notes)
    clamped_mass = _clamped_mass(part, k, warnings)
    clamped_to_zero = False
    # Cancellation in tr Σ1 + tr Σ2 − 2 tr(·)^½ is the dominant error; √(d·eps) relative
    # is a generous bound on it, and anything below that is a bug, not round-off.
    total = tr1 + tr2 + mean_term
    tol = math.sqrt(max(d, 1) * _EPS64) * total + clamped_sqrt_bound
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
    if clamped_sqrt_bound > 0 and total > 0 and clamped_sqrt_bound > 1e-9 * total:
        warnings.append(
            f"eigenvalues at round-off level were set to 0; the value may be off by up to "
            f"{clamped_sqrt_bound:.3g}"
        )
    return FrechetResult(
        value=float(value),
        mean_term=float(mean_term),
        trace_term=float(trace_term),
        trace_sqrt=float(trace_sqrt),
        dim=d,
        method=part.method,
        n1=n1,
        n2=n2,
        rank1=part.rank1,
        rank2=part.rank2,
        clamped_eigenvalue_mass=float(clamped_mass),
        clamped_fd_bound=float(clamped_sqrt_bound),
        clamped_to_zero=clamped_to_zero,
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _clamped_mass(part: _TracePart, k: int, warnings: list[str]) -> float:
    """Covariance mass (squared units, ×4^k) plus product mass (units⁴, ×16^k).

    A diagnostic: beyond float64 it is reported as the largest float, with a warning.
    """
    try:
        return math.ldexp(part.cov_mass, 2 * k) + math.ldexp(part.product_mass, 4 * k)
    except OverflowError:
        warnings.append("clamped_eigenvalue_mass exceeds float64 (units⁴); reported as 1.8e308")
        return float(np.finfo(np.float64).max)


# --------------------------------------------------------------------------- public


class FrechetReference:
    """A reference Gaussian (μ_r, Σ_r) factored once, Σ_r = F Fᵀ, for many comparisons.

    Each :meth:`compare` then costs one matrix product and one symmetric eigenvalue
    solve of size rank(Σ_r); :meth:`compare_features` one QR and one SVD (exact for any
    n). This is the in-training case: the dataset side never changes.

    The factor is computed on Σ_r/4^k (k = :attr:`scale_exponent`, max|Σ_r|/4^k < 1) and
    every comparison runs at the larger of its own and the reference's power of two, so
    that no product of the two sides can overflow.

    Args:
        mu: reference mean, shape (d,).
        sigma: reference covariance, shape (d, d), ddof=1. Its dtype sets the round-off
            tolerance (a float32-stored covariance carries float32 round-off).
        n: number of samples behind the reference, when known (M): the rank of Σ_r is
            then at most M − 1 and exactly the structural zeros are removed.
    """

    def __init__(self, mu: ArrayLike, sigma: ArrayLike, n: int | None = None) -> None:
        mu_t, _ = as_float64(mu, "mu2")
        sigma_t, eps = as_float64(sigma, "sigma2")
        sigma_t = _validate_moments(mu_t, sigma_t.to(mu_t.device), "2")
        self.mu = mu_t
        self.sigma = sigma_t
        self.n = n
        self.eps = eps
        self._exp = _cov_exponent(sigma_t)
        self._factor = _factor(_times_pow2(sigma_t, -2 * self._exp), eps, "2", n)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @property
    def method(self) -> str:
        return self._factor.method

    @property
    def scale_exponent(self) -> int:
        """k with max|Σ_r| < 4^k: the reference's own power of two."""
        return self._exp

    @property
    def factor(self) -> torch.Tensor:
        """F with Σ_r = F Fᵀ, shape (d, r), float64."""
        return _times_pow2(self._factor.f, self._exp)

    def scaled_factor(self, exponent: int) -> torch.Tensor:
        """The factor of Σ_r/4^exponent, F/2^exponent (exact): what
        :meth:`compare_projected` expects side 1 projected on at that exponent."""
        return self._factor_at(exponent).f

    def _factor_at(self, exponent: int) -> _Factor:
        return self._factor.times_pow2(self._exp - exponent)

    def compare(self, mu: ArrayLike, sigma: ArrayLike, n: int | None = None) -> FrechetResult:
        """FD between (mu, sigma) [side 1, from ``n`` samples when known] and the reference."""
        mu_t, _ = as_float64(mu, "mu1")
        sigma_t, eps = as_float64(sigma, "sigma1")
        dev = self.mu.device
        mu_t, sigma_t = mu_t.to(dev), sigma_t.to(dev)
        sigma_t = _validate_moments(mu_t, sigma_t, "1")
        if mu_t.shape[0] != self.dim:
            raise FidevalError(
                f"dimension mismatch: side 1 has d={mu_t.shape[0]}, reference has d={self.dim}"
            )
        k = max(_cov_exponent(sigma_t), self._exp)
        part = _trace_part_of_covariance(
            self._factor_at(k), _times_pow2(sigma_t, -2 * k), eps, self.eps, n
        )
        return _finish(_mean_term(mu_t, self.mu), part, d=self.dim, exponent=k, n1=n, n2=self.n)

    def compare_projected(
        self,
        mu: torch.Tensor,
        projected_sigma: torch.Tensor,
        trace_sigma: float,
        *,
        n: int | None = None,
        eps: float = _EPS64,
        exponent: int = 0,
    ) -> FrechetResult:
        """FD from side 1 given in projected form: μ1, Fᵀ Σ1 F (r×r) and tr Σ1.

        This is all the kernel needs of Σ1, so callers that merge many statistics (the
        estimators' unions of groups) project each once and never form a d×d product.
        With ``exponent`` k, ``projected_sigma`` and ``trace_sigma`` are those of Σ1/4^k
        on F = :meth:`scaled_factor` (k); k = 0 is :attr:`factor` and Σ1 itself. Only the
        lower triangle of ``projected_sigma`` is read. With ``n`` unknown, the rank of Σ1
        is unknown and the product's eigenvalues are thresholded at their round-off level
        (tr Σ1 bounds ‖Σ1‖₂ there).
        """
        check_finite(projected_sigma, "projected covariance (overflow? pass an exponent)")
        fac = self._factor_at(exponent)
        side = _Side1(
            trace=float(trace_sigma),
            norm2=float(trace_sigma),
            eps=eps,
            n=n,
            rank=_known_rank(n, self.dim),
        )
        lam = _eigvals_lower(projected_sigma)
        part = _trace_part(fac, lam, side, self.dim, self.eps, f"{fac.method}-eigvalsh")
        mean_term = _mean_term(mu.to(self.mu.device), self.mu)
        return _finish(mean_term, part, d=self.dim, exponent=exponent, n1=n, n2=self.n)

    def compare_features(self, x: ArrayLike) -> FrechetResult:
        """FD between the Gaussian fitted to features ``x`` (n, d) and the reference.

        Exact in x for any n: with A = (X − μ)/√(n−1) = Q R and Σ_r = FFᵀ,
        tr((Σ_x Σ_r)^½) = sum of the singular values of R F (both at one power of two).
        """
        xt, _ = as_float64(x, "features")
        xt = xt.to(self.mu.device)
        n, d = _check_features(xt, "features")
        if d != self.dim:
            raise FidevalError(f"dimension mismatch: features have d={d}, reference d={self.dim}")
        kx = _exponent(float(xt.abs().max()))
        k = max(kx, self._exp)
        mu, r = _row_factor(_times_pow2(xt, -k))
        fac = self._factor_at(k)
        s = torch.linalg.svdvals(r @ fac.f)
        part = _TracePart(
            trace_sqrt=float(s.sum()),
            tr1=float((r * r).sum()),
            tr2=fac.trace,
            rank1=None,
            rank2=fac.rank,
            method="features-factor-svd",
            product_mass=0.0,
            cov_mass=fac.clamped_mass,
            sqrt_bound=0.0,
            notes=fac.notes,
        )
        mean_term = _mean_term(_times_pow2(mu, k), self.mu)
        return _finish(mean_term, part, d=d, exponent=k, n1=n, n2=self.n)


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

    Σ2 is factored (Cholesky, or pivoted Cholesky / eigh under the rank policy), then the
    eigenvalues of the symmetric Fᵀ Σ1 F give tr((Σ1Σ2)^½). ``n1``/``n2`` (sample counts)
    give each covariance's rank (≤ N − 1): exactly the structural zero eigenvalues are
    removed and every other one is kept. Without them, a singular covariance's rank is
    estimated from its pivots (or eigenvalues) above round-off, and a warning says so.
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
    if d == 0:
        raise FidevalError(f"{name}: features have zero width (d = 0); expected d ≥ 1")
    if n < 2:
        raise FidevalError(f"{name}: need at least 2 samples for a covariance, got N={n}")
    check_finite_rows(x, name)
    return int(n), int(d)


def _row_factor(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean μ and a factor R with RᵀR = Σ (ddof=1): A = (X − μ)/√(n−1) itself when
    n ≤ d, else the d×d triangle of its thin QR (Householder: backward stable)."""
    n, d = x.shape
    mu = x.mean(dim=0)
    a = (x - mu) / math.sqrt(n - 1)
    if n <= d:
        return mu, a
    return mu, torch.linalg.qr(a, mode="r")[1]


def frechet_from_features(x1: ArrayLike, x2: ArrayLike) -> FrechetResult:
    """Fréchet distance between the Gaussians fitted (ddof=1) to two feature sets, exactly.

    No covariance is formed. With A = (X − μ)/√(n−1) and R its QR triangle (A itself when
    n ≤ d), Σ = RᵀR and

        tr((Σ1Σ2)^½) = ‖R1 R2ᵀ‖_*   (sum of singular values),

    which are the square roots of eig(Σ1Σ2) computed without squaring: each carries an
    absolute error of order eps·‖R1‖·‖R2‖, so small eigenvalues keep their digits at any
    N. When the distributions nearly coincide (FD below CANCELLATION_RATIO of
    tr Σ1 + tr Σ2 + ‖Δμ‖²), the difference of traces cancels; FD is then taken as the
    orthogonal Procrustes residual ‖Δμ‖² + min_Q ‖R1 − Q R2‖²_F, which is the same
    quantity computed without cancellation. Both sets are divided by one power of two
    2^k ≥ max|x| first (exact), and the result multiplied by 4^k.
    """
    x1t, _ = as_float64(x1, "features1")
    x2t, _ = as_float64(x2, "features2")
    x2t = x2t.to(x1t.device)
    n1, d1 = _check_features(x1t, "features1")
    n2, d2 = _check_features(x2t, "features2")
    if d1 != d2:
        raise FidevalError(f"dimension mismatch: features1 has d={d1}, features2 has d={d2}")
    k = _exponent(max(float(x1t.abs().max()), float(x2t.abs().max())))
    mu1, r1 = _row_factor(_times_pow2(x1t, -k))
    mu2, r2 = _row_factor(_times_pow2(x2t, -k))
    c = r1 @ r2.mT
    s = torch.linalg.svdvals(c)
    diff = mu1 - mu2
    mean_scaled = float(diff @ diff)
    part = _TracePart(
        trace_sqrt=float(s.sum()),
        tr1=float((r1 * r1).sum()),
        tr2=float((r2 * r2).sum()),
        rank1=min(n1 - 1, d1),
        rank2=min(n2 - 1, d1),
        method="features-nuclear",
        product_mass=0.0,
        cov_mass=0.0,
        sqrt_bound=0.0,
        notes=(),
    )
    trace_value = part.tr1 + part.tr2 - 2.0 * part.trace_sqrt
    if mean_scaled + trace_value < CANCELLATION_RATIO * (part.tr1 + part.tr2 + mean_scaled):
        trace_value = _procrustes_residual(r1, r2, c)
        part = replace(part, method="features-procrustes")
    mean_term = _unscale(mean_scaled, k, "the mean term ‖μ1 − μ2‖²")
    return _finish(mean_term, part, d=d1, exponent=k, n1=n1, n2=n2, trace_value=trace_value)


def _procrustes_residual(r1: torch.Tensor, r2: torch.Tensor, c: torch.Tensor) -> float:
    """min over orthogonal Q of ‖R1 − Q R2‖²_F (rows zero-padded to a common count).

    Equals ‖R1‖² + ‖R2‖² − 2‖R1R2ᵀ‖_*, reached at Q = UVᵀ from the SVD of R1R2ᵀ; since it
    is a minimum, an error δQ in Q moves it only by O(‖δQ‖²).
    """
    m = max(r1.shape[0], r2.shape[0])
    pad = c.new_zeros((m, m))
    pad[: c.shape[0], : c.shape[1]] = c
    u, _, vh = torch.linalg.svd(pad)
    q = u @ vh
    b1 = r1.new_zeros((m, r1.shape[1]))
    b1[: r1.shape[0]] = r1
    b2 = r2.new_zeros((m, r2.shape[1]))
    b2[: r2.shape[0]] = r2
    res = b1 - q @ b2
    return float((res * res).sum())
