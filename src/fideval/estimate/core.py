"""``estimate_fid``: plain, bias-corrected, FID∞ and at-target FID, with intervals.

From K group statistics of one stream (:class:`~fideval.stats.GroupedStats`) and a
factored reference (:class:`~fideval.frechet.FrechetReference`):

1. project every group once on the reference factor (:class:`.subsets.UnionFrechet`);
2. evaluate FD on the unions the estimators need: all groups, each delete-one-group
   union (jackknife), R random orders' halves (Richardson) and nested unions from
   ⌈K/2⌉ to K groups (Chong & Forsyth) — about 1 + K + 5R eigenvalue solves;
3. every estimator is Σ_j w_j FD(S_j); its first-order standard error is
   σ̂_IF·√(Σ_g c_g²/n_g) with σ̂²_IF from the jackknife (:mod:`.intervals`);
   the 95% interval is value ± t_{0.975, K−1}·SE.

Model behind every extrapolation: E[FD_N] = FD∞ + k/N (+ O(1/N²)), the reference
held fixed. FD∞ is the generated distribution's distance to the reference
*statistics as given*: with a finite reference of M samples it includes the
reference's own bias k_r/M, exactly as every FD computed against that file does.
``fid_at_target`` = FD∞ + k/target_n is therefore the expectation of the standard
protocol (target_n generated samples against this reference file).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import FidevalError
from ..frechet import FrechetReference
from ..stats import GaussianStats, GroupedStats
from .bias import Combo, add_combo, jackknife_combos, quadratic_combos, richardson_combos
from .infinity import chong_forsyth_combos, nested_points
from .intervals import influence_sd, linear_se_sd, t_quantile
from .result import FidEstimate
from .subsets import UnionFrechet

__all__ = ["CORRECTORS", "MIN_GROUPS", "estimate_fid", "required_samples"]

#: Fewest groups: the nested OLS needs ≥ 3 points and the t quantile ≥ 1 df.
MIN_GROUPS = 4
#: Below this many groups the t_{K−1} interval is wide and its variance poorly estimated.
FEW_GROUPS = 8
CORRECTORS = ("jackknife", "richardson", "quadratic", "chong-forsyth")


def required_samples(groups: int) -> int:
    """Fewest samples for K groups: two per group (a covariance needs n ≥ 2)."""
    return 2 * groups


def _orders(k: int, count: int, seed: int) -> list[list[int]]:
    """``count`` random orders of the K groups (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(k).tolist() for _ in range(count)]


def as_reference(reference: Any) -> FrechetReference:
    """The reference as a :class:`FrechetReference`, factored once.

    Accepts a FrechetReference (returned as is), a :class:`~fideval.stats.GaussianStats`
    (N = its count) or a statistics record with ``mu``, ``sigma`` and ``n``
    (:class:`~fideval.io.statsfile.StatsRecord`; ``n`` may be None: M unknown).
    """
    if isinstance(reference, FrechetReference):
        return reference
    if isinstance(reference, GaussianStats):
        if reference.n < 2:
            raise FidevalError(f"reference statistics hold N={reference.n}; need ≥ 2 samples")
        return FrechetReference(reference.mean_tensor, reference.cov_tensor, n=reference.n)
    if all(hasattr(reference, key) for key in ("mu", "sigma", "n")):
        return FrechetReference(reference.mu, reference.sigma, n=reference.n)
    raise FidevalError(
        f"reference: expected a FrechetReference, GaussianStats or StatsRecord, got "
        f"{type(reference).__name__}"
    )


def _require_finite(details: dict[str, Any]) -> None:
    """Raise FidevalError when an estimate, slope or interval end overflowed float64."""
    for name, entry in details.items():
        for key, value in entry.items():
            ends = value if isinstance(value, list) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in ends):
                raise FidevalError(
                    f"estimate {name}.{key} overflows float64 (max ≈ 1.8e308); rescale the "
                    f"features (FD scales as the square of the feature scale)"
                )


def _coefficients(combo: Combo, sizes: Sequence[int], ev: UnionFrechet) -> np.ndarray:
    """c_g = Σ_j w_j [g ∈ S_j] n_g / n_{S_j}: first-order weight of group g."""
    c = np.zeros(len(sizes))
    for subset, w in combo.items():
        n_s = ev.n_of(subset)
        for g in subset:
            c[g] += w * sizes[g] / n_s
    return c


def estimate_fid(
    grouped: GroupedStats,
    reference: FrechetReference | GaussianStats | Any,
    *,
    target_n: int = 50_000,
    orders: int = 3,
    min_fraction: float = 0.5,
    corrector: str = "quadratic",
    target_from: str | None = None,
    seed: int = 0,
) -> FidEstimate:
    """Plain FID, bias-corrected FID, FID∞ and E[FID at target_n] from one stream.

    Args:
        grouped: statistics of K disjoint groups of the generated stream (K ≥ 4).
        reference: the reference: a :class:`FrechetReference` (factored once;
            ``reference.n`` is M, None: unknown), or a :class:`GaussianStats` or
            :class:`~fideval.io.statsfile.StatsRecord`, factored here.
        target_n: N_target of ``fid_at_target`` (default 50 000, the usual protocol).
        orders: random group orders R averaged by Richardson and Chong–Forsyth.
        min_fraction: smallest nested union used by Chong–Forsyth, as a fraction of N.
        corrector: the estimator behind ``fid_bias_corrected``: ``"quadratic"``
            (default: jackknife and Richardson points combined, no O(1/N²) error; see
            docs/estimators.md), ``"jackknife"``, ``"richardson"`` or ``"chong-forsyth"``.
        target_from: the (FD∞, slope) pair behind ``fid_at_target``; default: the same
            as ``corrector``.
        seed: seed of the random group orders (results are deterministic in it).

    Raises:
        FidevalError: fewer than 4 groups, fewer than 2 samples in a group, dimension
            mismatch, unknown corrector.
    """
    target_from = target_from or corrector
    for name, value in (("corrector", corrector), ("target_from", target_from)):
        if value not in CORRECTORS:
            raise FidevalError(f"{name}={value!r}: expected one of {', '.join(CORRECTORS)}")
    k = grouped.k
    if k < MIN_GROUPS:
        raise FidevalError(
            f"estimate_fid needs at least {MIN_GROUPS} groups (delete-a-group jackknife and "
            f"a ≥ 3-point line in 1/N), got K={k}"
        )
    if target_n < 2:
        raise FidevalError(f"target_n must be ≥ 2, got {target_n}")
    if orders < 1:
        raise FidevalError(f"orders must be ≥ 1, got {orders}")
    sizes = grouped.sizes()
    n = sum(sizes)
    need = required_samples(k)
    if min(sizes) < 2:
        raise FidevalError(
            f"the stream is too short for {k} groups: {n} sample(s), need at least {need} "
            f"(≥ 2 per group); feed more samples or use fewer groups"
        )
    reference = as_reference(reference)
    ev = UnionFrechet(grouped, reference)
    d = reference.dim
    full = frozenset(range(k))
    perms = _orders(k, orders, seed)

    lines: dict[str, tuple[Combo, Combo]] = {
        "jackknife": jackknife_combos(sizes),
        "richardson": richardson_combos(sizes, perms),
        "chong-forsyth": chong_forsyth_combos(sizes, perms, min_fraction),
    }
    fd_full = ev.fd(full)
    loo = [ev.fd(full - {g}).value for g in range(k)]
    sigma_if, _ = influence_sd(fd_full.value, loo, sizes)
    sigma2_if = sigma_if * sigma_if
    tq = t_quantile(0.95, k - 1)

    def evaluate(combo: Combo) -> tuple[float, float]:
        value = sum(w * ev.fd(s).value for s, w in combo.items())
        return float(value), linear_se_sd(sigma_if, _coefficients(combo, sizes, ev), sizes)

    def interval(value: float, se: float, extra: float = 0.0) -> tuple[float, float]:
        half = tq * se + extra
        return (value - half, value + half)

    values: dict[str, dict[str, tuple[float, float]]] = {}
    for name, (icpt, slope) in lines.items():
        at = add_combo(dict(icpt), slope, 1.0 / target_n)
        values[name] = {"inf": evaluate(icpt), "slope": evaluate(slope), "at": evaluate(at)}
    q_inf, q_slope, q_at = quadratic_combos(sizes, perms, target_n)
    values["quadratic"] = {"inf": evaluate(q_inf), "slope": evaluate(q_slope), "at": evaluate(q_at)}
    # Extrapolation (curvature) error, added to every extrapolated half-width: the
    # two-point lines (jackknife, Richardson, Chong-Forsyth) are off by their O(1/N²)
    # term, estimated by their distance to the quadratic fit; the quadratic's own error
    # is bounded by the size of its curvature correction, |quadratic − jackknife|.
    quad = values["quadratic"]
    extra_of: dict[str, dict[str, float]] = {}
    for name, vals in values.items():
        other = values["jackknife"] if name == "quadratic" else quad
        extra_of[name] = {key: abs(vals[key][0] - other[key][0]) for key in ("inf", "at")}
    details: dict[str, Any] = {}
    for name, vals in values.items():
        (v_inf, se_inf), (v_slope, se_slope), (v_at, se_at) = (
            vals["inf"],
            vals["slope"],
            vals["at"],
        )
        details[name] = {
            "fid_infinity": v_inf,
            "fid_infinity_ci95": list(interval(v_inf, se_inf, extra_of[name]["inf"])),
            "fid_infinity_se": se_inf,
            "slope": v_slope,
            "slope_se_first_order": se_slope,
            "fid_at_target": v_at,
            "fid_at_target_ci95": list(interval(v_at, se_at, extra_of[name]["at"])),
            "fid_at_target_se": se_at,
            "extrapolation_error": dict(extra_of[name]),
        }
    _require_finite(details)
    se_fid = linear_se_sd(sigma_if, _coefficients({full: 1.0}, sizes, ev), sizes)
    details["sigma2_if"] = sigma2_if
    details["sigma_if"] = sigma_if
    details["t_quantile"] = tq
    details["fd_leave_one_out"] = loo
    details["mean_term"] = fd_full.mean_term
    details["trace_term"] = fd_full.trace_term

    bc = details[corrector]
    cf = details["chong-forsyth"]
    at = details[target_from]
    m = reference.n
    warnings = list(fd_full.warnings)
    if math.isinf(sigma2_if):
        warnings.append(
            f"σ̂²_IF exceeds float64 (squared FD units per sample); details['sigma_if'] = "
            f"{sigma_if:.3g} is its square root, and every interval was computed from it"
        )
    valid = True
    smallest = min(ev.n_of(frozenset(p[:c])) for p in perms for c in nested_points(k, min_fraction))
    smallest = min(smallest, min(ev.n_of(full - {g}) for g in range(k)), n // 2)
    if n <= d:
        valid = False
        warnings.append(
            f"N={n} ≤ d={d}: the covariance is rank-deficient and FD is far from linear in "
            f"1/N; the extrapolations and intervals are invalid (need N > {2 * d})"
        )
    elif smallest <= d:
        valid = False
        warnings.append(
            f"the smallest union used for extrapolation holds {smallest} ≤ d={d} samples "
            f"(rank-deficient covariance): the bias correction is unreliable; need "
            f"N > {math.ceil(d / min(min_fraction, 0.5))} for d={d}"
        )
    if k < FEW_GROUPS:
        warnings.append(
            f"only K={k} groups: the variance estimate has {k - 1} degrees of freedom and "
            f"the t_{{0.975,{k - 1}}} = {tq:.2f} interval is wide; use ≥ {FEW_GROUPS} groups"
        )
    lo = bc["fid_infinity_ci95"][0]
    bias_n = fd_full.value - bc["fid_infinity"]
    if lo <= 0.0 or bias_n > 2.0 * max(bc["fid_infinity"], 0.0):
        valid = False
        warnings.append(
            f"the two distributions nearly coincide at this N (bias-corrected FD "
            f"{bc['fid_infinity']:.4g}, sampling bias at N {bias_n:.4g}): the first-order "
            f"term of FD vanishes, FD_N is not normal and the intervals are unreliable"
        )
    curve = extra_of[target_from]["at"]
    if curve > tq * at["fid_at_target_se"]:
        warnings.append(
            f"FD is measurably curved in 1/N at N={n} (extrapolation error {curve:.3g} "
            f"exceeds the sampling half-width): the intervals are dominated by it; more "
            f"samples shrink it as 1/N²"
        )
    method = (
        f"fid: FD of all N; fid_bias_corrected: {corrector}; fid_infinity: chong-forsyth "
        f"OLS of FD on 1/N over nested unions of {nested_points(k, min_fraction)[0]}..{k} "
        f"of {k} groups, {orders} random orders; fid_at_target: FD∞ + slope/target_n "
        f"({target_from}); intervals: value ± t_{{0.975,{k - 1}}}·SE, SE first-order "
        f"(delta method with the group-jackknife influence variance), extrapolated values "
        f"also ± their extrapolation error (distance to the quadratic fit; quadratic: "
        f"± |quadratic − jackknife|)"
    )
    return FidEstimate(
        n=n,
        m=m,
        fid=fd_full.value,
        fid_ci95=interval(fd_full.value, se_fid),
        fid_bias_corrected=bc["fid_infinity"],
        fid_bias_corrected_ci95=tuple(bc["fid_infinity_ci95"]),  # type: ignore[arg-type]
        fid_infinity=cf["fid_infinity"],
        fid_infinity_ci95=tuple(cf["fid_infinity_ci95"]),  # type: ignore[arg-type]
        fid_at_target=at["fid_at_target"],
        fid_at_target_ci95=tuple(at["fid_at_target_ci95"]),  # type: ignore[arg-type]
        target_n=int(target_n),
        method=method,
        groups=k,
        se={
            "fid": se_fid,
            "fid_bias_corrected": bc["fid_infinity_se"],
            "fid_infinity": cf["fid_infinity_se"],
            "fid_at_target": at["fid_at_target_se"],
        },
        valid=valid,
        warnings=warnings,
        details=details,
        n_used=n,
        stopped_because="stream end",
        evaluations=ev.evaluations,
    )
