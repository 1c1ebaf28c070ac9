"""The result of :func:`fideval.estimate.estimate_fid`: values, intervals, N, M, method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FidEstimate"]


@dataclass
class FidEstimate:
    """FID estimates from one stream of N generated samples against a reference of M.

    All values are in squared feature units (FID units). Each ``*_ci95`` is a
    (low, high) 95% interval. What each value estimates (the reference is held fixed,
    so every quantity is conditional on the reference statistics as given):

    * ``fid``: plain FD_N of all N samples; its interval is for E[FD_N], the
      expectation of the standard protocol at this N.
    * ``fid_bias_corrected``: FD∞ by the chosen bias corrector (default: the
      quadratic in 1/N through FD_N, the jackknife and the Richardson points), the
      limit N → ∞ of E[FD_N].
    * ``fid_infinity``: FD∞ by Chong & Forsyth's OLS on nested unions of groups.
    * ``fid_at_target``: E[FD_{target_n}] = FD∞ + k/target_n, what the standard
      protocol with ``target_n`` generated samples and this same reference would give
      in expectation (the reference's own k_r/M bias is included, as it is in the
      protocol).

    Attributes:
        n: generated samples used (N). m: reference samples (M), None when unknown.
        groups: K. target_n: the target N of ``fid_at_target``.
        method: how each value and interval was computed.
        se: first-order standard errors (squared feature units) by value name.
        valid: False when a warning says the intervals (or extrapolations) are invalid.
        warnings: plain-language warnings.
        details: every estimator's value and interval, the slope k (FD units × samples),
            σ²_IF, and the FD of the halves, for diagnostics and benchmarks.
        n_used, stopped_because: filled by the adaptive driver (else N and "stream end").
        evaluations: Fréchet distances computed (one eigenvalue solve each).
    """

    n: int
    m: int | None
    fid: float
    fid_ci95: tuple[float, float]
    fid_bias_corrected: float
    fid_bias_corrected_ci95: tuple[float, float]
    fid_infinity: float
    fid_infinity_ci95: tuple[float, float]
    fid_at_target: float
    fid_at_target_ci95: tuple[float, float]
    target_n: int
    method: str
    groups: int
    se: dict[str, float] = field(default_factory=dict)
    valid: bool = True
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    n_used: int | None = None
    stopped_because: str | None = None
    evaluations: int = 0

    def value(self, name: str) -> float:
        """The value of one estimate by name (``fid``, ``fid_at_target``, …)."""
        return float(getattr(self, name))

    def ci(self, name: str) -> tuple[float, float]:
        return tuple(getattr(self, f"{name}_ci95"))  # type: ignore[return-value]

    def half_width(self, name: str) -> float:
        """Half the width of the 95% interval of ``name``."""
        lo, hi = self.ci(name)
        return 0.5 * (hi - lo)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict (intervals as two-element lists; M null when unknown)."""
        out: dict[str, Any] = {"n": self.n, "m": self.m}
        for name in ("fid", "fid_bias_corrected", "fid_infinity", "fid_at_target"):
            out[name] = float(getattr(self, name))
            out[f"{name}_ci95"] = [float(v) for v in getattr(self, f"{name}_ci95")]
        out.update(
            target_n=self.target_n,
            n_used=self.n if self.n_used is None else self.n_used,
            stopped_because=self.stopped_because or "stream end",
            method=self.method,
            groups=self.groups,
            valid=self.valid,
            se=dict(self.se),
            warnings=list(self.warnings),
            details=self.details,
        )
        return out
