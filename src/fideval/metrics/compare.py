"""Is checkpoint A better than checkpoint B? FID(a) − FID(b) with a 95% interval.

:func:`compare_features` is the entry point: features of two generated sets against one
reference (features or statistics). The point values are fideval's own Fréchet kernel
(equal to :func:`fideval.fid` on the same inputs); the interval comes from per-sample
influence values (:mod:`fideval.metrics.influence`). To first order, with D = FD(a, r) −
FD(b, r) and its plug-in estimate D̂,

.. math::

    \\hat D - D \\approx \\frac1{N_a}\\sum_i IF_a(x_i) - \\frac1{N_b}\\sum_i IF_b(x'_i)
        + \\frac1M\\sum_j \\big(IF_r^a(y_j) - IF_r^b(y_j)\\big).

* **Paired** (``paired=True``): row i of a and row i of b were generated from the same
  noise (common random numbers), so N_a = N_b = N and
  SE² = Var(IF_a(x_i) − IF_b(x'_i))/N — the paired-t variance of the differences. When
  the two models respond alike to the same noise the influence values are strongly
  correlated and most of the noise cancels.
* **Unpaired**: the two sets are independent; SE² = Var IF_a/N_a + Var IF_b/N_b.
* **Reference**: both FIDs share the reference, whose own sampling noise enters D̂
  through IF_r^a(y) − IF_r^b(y) (which largely cancels too). With reference *features*
  SE² gains Var(IF_r^a − IF_r^b)/M. With reference *statistics* that term cannot be
  formed: the interval is conditional on the reference as given, and ``warnings`` says so.

The interval is D̂ ± t_{0.975, ν}·SE and the p-value two-sided, ν by Welch–Satterthwaite
over the variance components (ν = N − 1 for a plain paired comparison). It covers
E[FD_{N_a}(a)] − E[FD_{N_b}(b)] against this reference: each FID's sampling bias k/N
(k ≥ 0) is not removed, and only its difference (k_a − k_b)/N enters a paired difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .._arrays import ArrayLike
from .._tdist import student_t_cdf, student_t_ppf
from ..errors import FidevalError
from ..frechet import FrechetReference, frechet_from_features
from ..stats import GaussianStats
from .influence import (
    FrechetInfluence,
    GaussianRoots,
    feature_shape,
    feature_stats,
    gaussian_roots,
)

__all__ = ["Comparison", "compare_features", "compare_influence"]

LEVEL = 0.95


@dataclass
class Comparison:
    """FID(a) − FID(b) with its 95% interval (JSON-ready via :meth:`to_dict`).

    Attributes:
        fid_a, fid_b: plain FID of each set against the reference.
        difference: ``fid_a − fid_b`` (negative: a is better).
        ci95: 95% interval of the difference.
        p_value: two-sided p-value of "no difference".
        n: samples of a (and of b when paired).
        paired: whether rows were paired (common random numbers).
        warnings: what to know about the interval.
        n_b: samples of b.
        m: reference samples (None when unknown).
        se: standard error of the difference.
        se_reference: the reference's share of it (None: not included).
        df: degrees of freedom of the t interval.
        correlation: correlation of the paired influence values (None when unpaired).
        method: how the interval was formed.
    """

    fid_a: float
    fid_b: float
    difference: float
    ci95: tuple[float, float]
    p_value: float
    n: int
    paired: bool
    warnings: list[str] = field(default_factory=list)
    n_b: int = 0
    m: int | None = None
    se: float = 0.0
    se_reference: float | None = None
    df: float = math.inf
    correlation: float | None = None
    method: str = ""

    @property
    def half_width(self) -> float:
        """Half the interval's width."""
        return 0.5 * (self.ci95[1] - self.ci95[0])

    @property
    def significant(self) -> bool:
        """True when the 95% interval excludes 0."""
        return self.ci95[0] > 0.0 or self.ci95[1] < 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci95"] = list(self.ci95)
        out["df"] = None if math.isinf(self.df) else self.df
        return out


# --------------------------------------------------------------------------- statistics


def _var(x: np.ndarray) -> float:
    return float(np.var(x, ddof=1)) if x.size > 1 else math.nan


def _interval(
    difference: float, components: Sequence[tuple[float, float]]
) -> tuple[float, tuple[float, float], float, float]:
    """(SE, ci95, p-value, ν) from variance components (v_k, ν_k) of the difference.

    SE² = Σ v_k; ν = (Σ v_k)² / Σ v_k²/ν_k (Welch–Satterthwaite); interval
    D ± t_{0.975, ν}·SE; p = 2·(1 − F_t(|D|/SE; ν)).
    """
    total = sum(v for v, _ in components)
    se = math.sqrt(max(total, 0.0))
    if se == 0.0:
        p = 1.0 if difference == 0.0 else 0.0
        return 0.0, (difference, difference), p, math.inf
    active = [(v, k) for v, k in components if v > 0]
    if len(active) == 1:
        df = active[0][1]  # one component: its own degrees of freedom, exactly
    else:
        df = total * total / sum(v * v / k for v, k in active)
    df = max(df, 1.0)
    tq = student_t_ppf(0.5 + LEVEL / 2.0, df) if math.isfinite(df) else 1.959963984540054
    t = abs(difference) / se
    cdf = student_t_cdf(t, df) if math.isfinite(df) else _normal_cdf(t)
    p = max(0.0, min(1.0, 2.0 * (1.0 - cdf)))
    return se, (difference - tq * se, difference + tq * se), p, df


def _normal_cdf(t: float) -> float:
    return 0.5 * math.erfc(-t / math.sqrt(2.0))


def compare_influence(
    values_a: ArrayLike,
    values_b: ArrayLike,
    fid_a: float,
    fid_b: float,
    *,
    paired: bool,
    reference_values: ArrayLike | None = None,
    m: int | None = None,
    warnings: Sequence[str] = (),
) -> Comparison:
    """A :class:`Comparison` from per-sample influence values of each FID.

    Args:
        values_a, values_b: IF_a(x_i) (N_a,) and IF_b(x'_i) (N_b,).
        fid_a, fid_b: the point values.
        paired: row i of a and of b share their noise. With N_a ≠ N_b the first
            n₀ = min(N_a, N_b) rows are the pairs and
            SE² = σ_a²/N_a + σ_b²/N_b − 2 n₀ c_ab/(N_a N_b), c_ab their covariance
            (ν = n₀ − 1); with N_a = N_b this is Var(IF_a − IF_b)/N.
        reference_values: IF_r^a(y_j) − IF_r^b(y_j) over the reference samples, when known.
        m: reference samples (reported; the length of ``reference_values`` when given).
        warnings: carried into the result.
    """
    a = np.asarray(values_a, dtype=np.float64).ravel()
    b = np.asarray(values_b, dtype=np.float64).ravel()
    na, nb = a.size, b.size
    if na < 2 or nb < 2:
        raise FidevalError(f"need at least 2 influence values per side, got {na} and {nb}")
    diff = float(fid_a) - float(fid_b)
    notes = list(warnings)
    corr: float | None = None
    if paired:
        n0 = min(na, nb)
        pa, pb = a[:n0], b[:n0]
        if na == nb:
            components = [(_var(pa - pb) / n0, n0 - 1.0)]
        else:
            cov = float(np.cov(pa, pb, ddof=1)[0, 1])
            v = _var(a) / na + _var(b) / nb - 2.0 * n0 * cov / (na * nb)
            components = [(max(v, 0.0), n0 - 1.0)]
            notes.append(
                f"paired on the first {n0} samples (N_a={na}, N_b={nb}); the rest are independent"
            )
        sa, sb = np.std(pa), np.std(pb)
        corr = float(np.corrcoef(pa, pb)[0, 1]) if sa > 0 and sb > 0 else None
        method = "paired: SE² = Var(IF_a(x_i) − IF_b(x'_i))/N"
    else:
        components = [(_var(a) / na, na - 1.0), (_var(b) / nb, nb - 1.0)]
        method = "unpaired: SE² = Var IF_a/N_a + Var IF_b/N_b"
    se_ref: float | None = None
    if reference_values is not None:
        r = np.asarray(reference_values, dtype=np.float64).ravel()
        if r.size < 2:
            raise FidevalError(f"need at least 2 reference influence values, got {r.size}")
        m = r.size
        v_r = _var(r) / r.size
        components.append((v_r, r.size - 1.0))
        se_ref = math.sqrt(max(v_r, 0.0))
        method += " + Var(IF_r^a(y) − IF_r^b(y))/M"
    se, ci, p, df = _interval(diff, components)
    method += (
        "; interval D ± t_{0.975,ν}·SE, ν Welch–Satterthwaite; IF = first-order influence "
        "function of FD (fideval.metrics.influence)"
    )
    return Comparison(
        fid_a=float(fid_a),
        fid_b=float(fid_b),
        difference=diff,
        ci95=ci,
        p_value=p,
        n=na,
        paired=bool(paired),
        warnings=list(dict.fromkeys(notes)),
        n_b=nb,
        m=m,
        se=se,
        se_reference=se_ref,
        df=df,
        correlation=corr,
        method=method,
    )


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class _Reference:
    roots: GaussianRoots
    kernel: FrechetReference | None  # statistics route
    features: ArrayLike | None  # features route
    n: int | None


def _resolve_reference(reference: Any, d: int) -> _Reference:
    """Reference features (M, d), or statistics: GaussianStats, StatsRecord, or anything
    with ``mu``, ``sigma`` (and ``n``)."""
    if hasattr(reference, "record"):  # fideval.train's ReferenceStats
        reference = reference.record
    if isinstance(reference, GaussianStats):
        mu, sigma, n = reference.mean, reference.cov, reference.n
    elif hasattr(reference, "mu") and hasattr(reference, "sigma"):
        mu, sigma, n = reference.mu, reference.sigma, getattr(reference, "n", None)
    elif isinstance(reference, np.ndarray | torch.Tensor):
        if reference.ndim != 2:
            raise FidevalError(
                f"reference: expected features (M, d) or statistics (GaussianStats, "
                f"StatsRecord), got an array of shape {tuple(reference.shape)}"
            )
        m, dr = feature_shape(reference, "reference features")
        if dr != d:
            raise FidevalError(
                f"dimension mismatch: features have d={d}, reference features d={dr}"
            )
        st = feature_stats(reference, "reference features")
        roots = gaussian_roots(st.mean_tensor, st.cov_tensor, m, name="reference features")
        return _Reference(roots, None, reference, m)
    else:
        raise FidevalError(
            f"reference: expected features (M, d), a GaussianStats or a StatsRecord, got "
            f"{type(reference).__name__}"
        )
    kernel = FrechetReference(mu, sigma, n=n)
    if kernel.dim != d:
        raise FidevalError(f"dimension mismatch: features have d={d}, reference d={kernel.dim}")
    return _Reference(gaussian_roots(mu, sigma, n, name="reference sigma"), kernel, None, n)


def _fid(x: ArrayLike, stats: GaussianStats, ref: _Reference) -> tuple[float, list[str]]:
    """fideval's kernel, as :func:`fideval.fid` routes it (features: exact features route;
    statistics: the statistics route with both N)."""
    if ref.features is not None:
        res = frechet_from_features(x, ref.features)
    else:
        assert ref.kernel is not None
        res = ref.kernel.compare(stats.mean_tensor, stats.cov_tensor, n=stats.n)
    return res.value, list(res.warnings)


def _roots(stats: GaussianStats, name: str) -> GaussianRoots:
    return gaussian_roots(stats.mean_tensor, stats.cov_tensor, stats.n, name=name)


def compare_features(
    feats_a: ArrayLike, feats_b: ArrayLike, reference: Any, *, paired: bool = True
) -> Comparison:
    """FID(a) − FID(b) against one reference, with a 95% interval and a p-value.

    Args:
        feats_a, feats_b: generated features (N, d), numpy or torch. With
            ``paired=True`` row i of each came from the same noise (see
            ``docs/training.md``, "Comparing checkpoints"), so both need the same N.
        reference: reference features (M, d) — the reference's own sampling noise is then
            in the interval — or its statistics (:class:`~fideval.stats.GaussianStats`,
            :class:`~fideval.io.statsfile.StatsRecord`, anything with ``mu``, ``sigma``,
            ``n``): the interval is then conditional on that reference (a warning says so).
        paired: pair row i of a with row i of b (default), else treat them as independent.

    Returns:
        a :class:`Comparison`; ``difference < 0`` means a has the lower (better) FID.

    Raises:
        FidevalError: paired sets of different N, dimension mismatch, fewer than 2 rows,
            non-finite features, a reference of another kind.
    """
    na, d = feature_shape(feats_a, "feats_a")
    nb, db = feature_shape(feats_b, "feats_b")
    if d != db:
        raise FidevalError(f"dimension mismatch: feats_a has d={d}, feats_b has d={db}")
    if paired and na != nb:
        raise FidevalError(
            f"paired comparison: feats_a has N={na} rows and feats_b has N={nb}; row i of "
            f"each must come from the same noise, so both need the same N (pass "
            f"paired=False for independent samples)"
        )
    ref = _resolve_reference(reference, d)
    stats_a, stats_b = feature_stats(feats_a, "feats_a"), feature_stats(feats_b, "feats_b")
    fid_a, warn_a = _fid(feats_a, stats_a, ref)
    fid_b, warn_b = _fid(feats_b, stats_b, ref)
    inf_a = FrechetInfluence(_roots(stats_a, "feats_a"), ref.roots)
    inf_b = FrechetInfluence(_roots(stats_b, "feats_b"), ref.roots)
    notes = warn_a + warn_b + inf_a.warnings + inf_b.warnings
    for name, n in (("a", na), ("b", nb)):
        if n <= d:
            notes.append(
                f"N={n} ≤ d={d} for {name}: its covariance is rank-deficient and FID far from "
                f"its first-order behaviour; the interval is unreliable (need N ≫ d)"
            )
    ref_values = None
    if ref.features is not None:
        ref_values = inf_a.reference(ref.features) - inf_b.reference(ref.features)
    else:
        m = "unknown M" if ref.n is None else f"M={ref.n}"
        notes.append(
            f"reference given as statistics ({m}): its own sampling noise is not included; "
            f"the interval is conditional on this reference (pass reference features to "
            f"include it)"
        )
    return compare_influence(
        inf_a.generated(feats_a),
        inf_b.generated(feats_b),
        fid_a,
        fid_b,
        paired=paired,
        reference_values=ref_values,
        m=ref.n,
        warnings=notes,
    )
