"""Replications: per-run values, mean and honest confidence intervals.

Given R replications (fresh draws: new samples, new random pairs) of metric
values v_1..v_R, fideval reports

* ``mean``  = (1/R) Σ v_r,
* ``std``   = sample standard deviation s with ddof=1,
* ``ci_halfwidth`` = t_{(1+c)/2, R−1} · s / √R   (c = 0.95 by default): the
  Student-t interval for the mean, valid for small R when replications are
  independent and roughly normal;
* ``protocol_ci95_halfwidth`` = 1.96 · std(ddof=0) / √R: what the HumanML3D /
  text-to-motion scripts print as "CInterval". It is narrower than the t interval
  by t_{0.975,R−1}·√(R/(R−1))/1.96: ≈1.1× at R=20, ≈1.6× at R=5, ≈2.7× at R=3.
  Reported only so numbers can be compared with papers; do not use it as a 95% CI.

The Student-t quantile is computed here (no SciPy at run time) by bisection on
the t CDF, F(t) = 1 − ½ I_{ν/(ν+t²)}(ν/2, ½) for t ≥ 0, with the regularised
incomplete beta I_x(a, b) from its continued fraction (modified Lentz).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._tdist import betainc_regularized, student_t_cdf, student_t_ppf  # noqa: F401
from ..errors import FidevalError


@dataclass(frozen=True)
class ReplicationSummary:
    """Summary of one metric over R replications (scalars, or arrays such as R-precision)."""

    name: str
    values: np.ndarray = field(repr=False)
    mean: Any
    std: Any
    ci_halfwidth: Any
    ci_low: Any
    ci_high: Any
    protocol_ci95_halfwidth: Any
    replications: int
    confidence: float
    t_quantile: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": self.values.tolist(),
            "mean": _plain(self.mean),
            "std": _plain(self.std),
            "ci_halfwidth": _plain(self.ci_halfwidth),
            "ci_low": _plain(self.ci_low),
            "ci_high": _plain(self.ci_high),
            "confidence": self.confidence,
            "t_quantile": self.t_quantile,
            "protocol_ci95_halfwidth": _plain(self.protocol_ci95_halfwidth),
            "replications": self.replications,
            "interval": "t_{(1+c)/2,R-1}*std(ddof=1)/sqrt(R)",
            "protocol_interval": "1.96*std(ddof=0)/sqrt(R) (HumanML3D scripts; too narrow)",
        }


def _plain(v: Any) -> Any:
    arr = np.asarray(v, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else arr.tolist()


def summarize(values: Any, *, name: str = "value", confidence: float = 0.95) -> ReplicationSummary:
    """Summarise R replication values (shape (R,) or (R, k)); see module doc.

    With R = 1 the spread is unknown: std and intervals are NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0 or v.shape[0] < 1:
        raise FidevalError(f"{name}: need a sequence of replication values, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        bad = np.nonzero(~np.isfinite(v.reshape(v.shape[0], -1)).all(axis=1))[0]
        raise FidevalError(f"{name}: non-finite values in replications {bad[:10].tolist()}")
    if not 0.0 < confidence < 1.0:
        raise FidevalError(f"confidence must be in (0, 1), got {confidence}")
    r = v.shape[0]
    mean = v.mean(axis=0)
    if r >= 2:
        std = v.std(axis=0, ddof=1)
        tq = student_t_ppf(0.5 + confidence / 2.0, r - 1)
        half = tq * std / math.sqrt(r)
    else:
        std = np.full_like(mean, np.nan)
        tq = math.nan
        half = np.full_like(mean, np.nan)
    proto = 1.96 * v.std(axis=0, ddof=0) / math.sqrt(r) if r >= 2 else np.full_like(mean, np.nan)
    return ReplicationSummary(
        name=name,
        values=v,
        mean=mean,
        std=std,
        ci_halfwidth=half,
        ci_low=mean - half,
        ci_high=mean + half,
        protocol_ci95_halfwidth=proto,
        replications=r,
        confidence=confidence,
        t_quantile=tq,
    )


def replicate(
    source: Callable[[int, np.random.Generator], Mapping[str, Any]] | Sequence[Any],
    replications: int | None = None,
    *,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, ReplicationSummary]:
    """Run or collect R replications and summarise every metric.

    ``source`` is either a callback ``fn(replication_index, rng) -> {metric: value}``
    run ``replications`` times, each with its own generator from
    ``numpy.random.SeedSequence(seed).spawn(R)`` (independent streams), or a
    list of precomputed results: dicts of metric values, or plain values /
    arrays (summarised under ``"value"``). Values may be scalars or arrays of a
    fixed shape (e.g. R-precision [top-1, top-2, top-3]).
    """
    if callable(source):
        if replications is None or replications < 1:
            raise FidevalError(f"replications must be ≥ 1, got {replications}")
        streams = np.random.SeedSequence(seed).spawn(replications)
        results: list[Any] = [source(i, np.random.default_rng(s)) for i, s in enumerate(streams)]
    else:
        results = list(source)
        if replications is not None and replications != len(results):
            raise FidevalError(
                f"replications={replications} but {len(results)} precomputed results were given"
            )
    if not results:
        raise FidevalError("no replications to summarise")
    if not isinstance(results[0], Mapping):
        return {"value": summarize(results, name="value", confidence=confidence)}
    # "warnings" (lists of words, e.g. from motion_suite) are not metrics: not summarised.
    keys = [k for k in results[0] if k != "warnings"]
    for i, res in enumerate(results):
        if not isinstance(res, Mapping) or set(res.keys()) - {"warnings"} != set(keys):
            got = sorted(res.keys()) if isinstance(res, Mapping) else type(res).__name__
            raise FidevalError(
                f"replication {i} returned {got}; expected the keys {sorted(keys)} of replication 0"
            )
    return {k: summarize([res[k] for res in results], name=k, confidence=confidence) for k in keys}
