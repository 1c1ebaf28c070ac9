"""One check over every metric: the one-pass call equals the metric's own function on the
same features, results do not depend on the batch size, and the metric object merges and
round-trips its state exactly.

Batch-size bound: float32 features may differ by a few ulps between batch shapes (a
one-row batch runs a matrix-vector kernel); we allow 64·2⁻²⁴·max|f| per entry, and on
the same features the one pass and the function agree to 1e-12 relative.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fideval
from fideval.metrics.cmmd import cmmd
from fideval.metrics.inception_score import inception_score
from fideval.metrics.kid import kid
from fideval.metrics.prdc import prdc
from fideval.suite import METRICS
from helpers import features, images

OPTIONS = {
    "kid": {"kid_options": {"subset_size": 20, "subsets": 5}},
    "prdc": {"prdc_options": {"k": 3}},
    "is": {"is_options": {"splits": 4}},
}


def _function_value(name: str, a, b) -> dict:
    """The metric's own function on the given features (and logits for IS)."""
    if name == "fid":
        return {"fid": fideval.frechet_from_features(a, b).value}
    if name == "kid":
        r = kid(a, b, names=("A", "B"), **OPTIONS["kid"]["kid_options"])
        return {"kid": r.value, "kid_std": r.std}
    if name == "prdc":
        r = prdc(b, a, names=("B", "A"), **OPTIONS["prdc"]["prdc_options"]).to_dict()
        return {k: r[k] for k in ("precision", "recall", "density", "coverage")}
    if name == "cmmd":
        return {"cmmd": cmmd(a, b, names=("A", "B"))}
    r = inception_score(a, **OPTIONS["is"]["is_options"])
    return {"is": r.value, "is_std": r.std}


@pytest.mark.parametrize("name", [m for m in METRICS if m != "is"])
def test_one_pass_equals_the_function_at_any_batch_size(name):
    ext = fideval.extractor("digits")
    a_img, b_img = images(40, (8, 8), seed=1), images(36, (8, 8), seed=2)
    ref = fideval.streaming.collect(a_img, ext, features="required", batch_size=64).features
    for batch_size in (1, 7, 64):
        fa, fb = (
            fideval.streaming.collect(x, ext, features="required", batch_size=batch_size).features
            for x in (a_img, b_img)
        )
        # float32 kernels differ with the batch shape (GEMV at 1 row): a few ulps
        assert np.abs(fa - ref).max() <= 64 * 2.0**-24 * np.abs(ref).max()
        want = _function_value(name, fa, fb)
        got = fideval.evaluate(
            a_img, b_img, [name], extractor=ext, batch_size=batch_size, **OPTIONS.get(name, {})
        )
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), (name, key, batch_size)


def test_is_one_pass_equals_the_function():
    logits = features(50, 1008, seed=3) * 3
    want = _function_value("is", logits, None)
    got = inception_score(logits, **OPTIONS["is"]["is_options"])
    assert (got.value, got.std) == (want["is"], want["is_std"])


@pytest.mark.parametrize("batch", [1, 13, 200])
def test_fid_object_equals_the_function_merges_and_round_trips(batch):
    real, fake = features(120, 6, seed=4), features(90, 6, seed=5, shift=0.4)
    want = fideval.frechet_from_features(fake, real).value
    whole = fideval.FID()
    halves = [fideval.FID(), fideval.FID()]
    for i in range(0, 120, batch):
        whole.update(real[i : i + batch], real=True)
        halves[(i // batch) % 2].update(real[i : i + batch], real=True)
    for i in range(0, 90, batch):
        whole.update(fake[i : i + batch], real=False)
        halves[(i // batch) % 2].update(fake[i : i + batch], real=False)
    assert whole.compute().value == pytest.approx(want, rel=1e-10)
    halves[0].merge(halves[1])
    assert halves[0].compute().value == pytest.approx(want, rel=1e-10)  # statistics route
    restored = fideval.FID()
    restored.load_state_dict(whole.state_dict())
    assert restored.compute().value == pytest.approx(
        fideval.frechet_details(
            fake.mean(0),
            np.cov(fake, rowvar=False),
            real.mean(0),
            np.cov(real, rowvar=False),
            n1=90,
            n2=120,
        ).value,
        rel=1e-10,
    )
    torch.testing.assert_close(
        torch.as_tensor(restored.state_dict()["real"]["m2"]),
        torch.as_tensor(whole.state_dict()["real"]["m2"]),
        rtol=0,
        atol=0,
    )
