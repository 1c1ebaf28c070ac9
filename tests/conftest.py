"""Shared test helpers."""

from __future__ import annotations

import numpy as np
import pytest


def random_spd(rng: np.random.Generator, d: int, cond: float = 10.0) -> np.ndarray:
    """A random symmetric positive definite matrix with the given condition number."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    w = np.geomspace(1.0, 1.0 / cond, d)
    return (q * w) @ q.T


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
