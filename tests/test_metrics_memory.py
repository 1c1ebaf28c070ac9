"""Bounded memory: at N = 50 000 no strip of pairwise values grows with N × N.

Every pairwise computation goes through ``_distances.iter_strips``; a hook sees
the shape of each strip before it is computed. The test stops each metric after
a few strips (the shapes do not change afterwards), so it runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from fideval.metrics import _distances, cmmd, kid, prdc

N = 50_000


class _Stop(Exception):
    pass


@pytest.fixture
def record(monkeypatch):
    shapes: list[tuple[int, int]] = []

    def hook(rows: int, cols: int) -> None:
        shapes.append((rows, cols))
        if len(shapes) >= 3:
            raise _Stop

    monkeypatch.setattr(_distances, "_block_hook", hook)
    return shapes


@pytest.fixture(scope="module")
def big():
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, 4)).astype(np.float32), rng.normal(size=(N, 4)).astype(np.float32)


@pytest.mark.parametrize(
    "call",
    [
        lambda x, y: kid(x, y, subsets=1, subset_size=None),
        # PRDC's fake pass (fakes × fakes) comes first ...
        lambda x, y: prdc(x, y, k=5),
        # ... so with 10 fakes its first strips are the real pass: reals × all points.
        lambda x, y: prdc(x, y[:10], k=5),
        # Repeated rows are merged first; the strips stay bounded.
        lambda x, y: prdc(np.concatenate([x[: N // 2], x[: N // 2]]), y[:10], k=5),
        lambda x, y: cmmd(x, y),
    ],
    ids=["kid-full", "prdc-fake-pass", "prdc-real-pass", "prdc-repeats", "cmmd"],
)
def test_strips_are_bounded(big, record, call):
    x, y = big
    with pytest.raises(_Stop):
        call(x, y)
    assert record, "no chunked computation was seen"
    assert max(cols for _, cols in record) >= N // 2  # the large strips were reached
    for rows, cols in record:
        assert cols <= N + 10  # one set, or (PRDC's real pass) all distinct points
        assert rows * cols * 8 <= _distances.DEFAULT_BLOCK_BYTES
        assert rows < N // 100  # far from an N × N matrix


def test_strip_rows_budget():
    assert _distances.strip_rows(N) == _distances.DEFAULT_BLOCK_BYTES // (N * 8)
    assert _distances.strip_rows(10**12) == 1
