"""Inception Score: against a naive softmax implementation, bounds, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fideval.errors import FidevalError, NonFiniteFeaturesError
from fideval.metrics import inception_score


def naive_is(logits: np.ndarray, splits: int) -> tuple[float, float]:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = len(p)
    scores = []
    for s in range(splits):
        part = p[s * n // splits : (s + 1) * n // splits]
        py = part.mean(axis=0, keepdims=True)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(py)), axis=1))))
    return float(np.mean(scores)), float(np.std(scores))


def test_matches_naive():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1003, 20)) * 2.5
    res = inception_score(logits, splits=7)
    mean, std = naive_is(logits, 7)
    assert res.value == pytest.approx(mean, rel=1e-12)
    assert res.std == pytest.approx(std, rel=1e-9)
    assert len(res.values) == 7


def test_bounds():
    c, splits = 10, 4
    onehot = 200.0 * np.tile(np.eye(c), (splits, 1))  # each split holds every class once
    assert inception_score(onehot, splits=splits).value == pytest.approx(c, rel=1e-9)
    assert inception_score(np.zeros((40, c)), splits=splits).value == pytest.approx(1.0)
    # extreme logits: log-softmax stays finite where softmax would underflow to 0
    huge = np.where(np.eye(c, dtype=bool)[np.arange(40) % c], 1e4, -1e4)
    assert inception_score(huge, splits=splits).value == pytest.approx(c, rel=1e-9)


def test_shuffle_seeded():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(500, 8)) * 3
    a = inception_score(logits, splits=5, shuffle=True, seed=3)
    b = inception_score(logits, splits=5, shuffle=True, seed=3)
    np.testing.assert_array_equal(a.values, b.values)
    # one split: order does not matter
    assert inception_score(logits, splits=1, shuffle=True, seed=9).value == pytest.approx(
        inception_score(logits, splits=1).value, rel=1e-12
    )


def test_errors():
    with pytest.raises(FidevalError, match="logits: 5 rows; at least 10"):
        inception_score(np.zeros((5, 4)))
    bad = np.zeros((20, 4))
    bad[13, 1] = np.nan
    with pytest.raises(NonFiniteFeaturesError, match="first rows: 13"):
        inception_score(bad, splits=2)
