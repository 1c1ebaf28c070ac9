"""Shared test helpers."""

from __future__ import annotations

import socket

import numpy as np
import pytest


def free_port() -> int:
    """A TCP port free on the loopback now (the OS picks it), for a launcher's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def random_spd(rng: np.random.Generator, d: int, cond: float = 10.0) -> np.ndarray:
    """A random symmetric positive definite matrix with the given condition number."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    w = np.geomspace(1.0, 1.0 / cond, d)
    return (q * w) @ q.T


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
