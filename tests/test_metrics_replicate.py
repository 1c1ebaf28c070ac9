"""Replications: Student-t quantile vs SciPy, summaries, callbacks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fideval.errors import FidevalError
from fideval.metrics.replicate import (
    betainc_regularized,
    replicate,
    student_t_cdf,
    student_t_ppf,
    summarize,
)

stats = pytest.importorskip("scipy.stats")
special = pytest.importorskip("scipy.special")


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 19, 30, 100, 1000, 2.5])
@pytest.mark.parametrize("p", [0.5, 0.6, 0.9, 0.975, 0.995, 0.9999, 0.025, 1e-6])
def test_t_ppf_matches_scipy(df, p):
    assert student_t_ppf(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("a,b", [(0.5, 0.5), (2.0, 0.5), (50.0, 0.5), (3.0, 7.0)])
@pytest.mark.parametrize("x", [1e-8, 0.1, 0.5, 0.9, 0.999999])
def test_betainc_matches_scipy(a, b, x):
    assert betainc_regularized(a, b, x) == pytest.approx(
        special.betainc(a, b, x), rel=1e-11, abs=1e-15
    )


def test_t_cdf_symmetry():
    assert student_t_cdf(1.3, 4) + student_t_cdf(-1.3, 4) == pytest.approx(1.0, rel=1e-14)


def test_summary_formulas():
    vals = np.array([10.1, 9.7, 10.4, 10.0, 9.9])
    s = summarize(vals, name="fid")
    r = len(vals)
    assert s.mean == pytest.approx(vals.mean())
    assert s.std == pytest.approx(vals.std(ddof=1))
    assert s.ci_halfwidth == pytest.approx(
        stats.t.ppf(0.975, r - 1) * vals.std(ddof=1) / math.sqrt(r)
    )
    assert s.protocol_ci95_halfwidth == pytest.approx(1.96 * vals.std() / math.sqrt(r))
    assert s.ci_halfwidth / s.protocol_ci95_halfwidth == pytest.approx(1.58, abs=0.01)
    d = s.to_dict()
    assert d["ci_low"] == pytest.approx(s.mean - s.ci_halfwidth)
    assert {"values", "mean", "std", "ci_halfwidth", "protocol_ci95_halfwidth"} <= set(d)


def test_vector_values_and_single_replication():
    s = summarize([[0.4, 0.6, 0.7], [0.5, 0.6, 0.8]], name="r_precision")
    np.testing.assert_allclose(s.mean, [0.45, 0.6, 0.75])
    assert s.to_dict()["ci_halfwidth"][1] == 0.0
    one = summarize([3.0])
    assert math.isnan(one.std) and math.isnan(one.ci_halfwidth)


def test_replicate_callback_is_seeded_and_independent():
    def fn(i, rng):
        return {"x": rng.normal(), "idx": float(i)}

    a = replicate(fn, 6, seed=1)
    b = replicate(fn, 6, seed=1)
    np.testing.assert_array_equal(a["x"].values, b["x"].values)
    np.testing.assert_array_equal(a["idx"].values, np.arange(6))
    assert len(set(a["x"].values.tolist())) == 6


def test_replicate_precomputed():
    out = replicate([{"fid": 1.0}, {"fid": 2.0}, {"fid": 3.0}])
    assert out["fid"].mean == pytest.approx(2.0)
    plain = replicate([1.0, 2.0, 3.0])
    assert plain["value"].std == pytest.approx(1.0)
    with pytest.raises(FidevalError, match="replication 1 returned"):
        replicate([{"fid": 1.0}, {"kid": 2.0}])
    with pytest.raises(FidevalError, match="replications must be"):
        replicate(lambda i, rng: {"a": 1.0}, 0)
