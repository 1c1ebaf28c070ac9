"""Inception Score: against a naive softmax implementation, bounds, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fideval.errors import FidevalError, NonFiniteFeaturesError
from fideval.metrics import inception_score


def profile_batches(source, *args, profile="pytorch-fid", **kwargs):
    """Image batches through a named preprocessing profile (what extractors hand the stream)."""
    from fideval.data.images import iter_image_batches
    from fideval.features.preprocess import get_profile

    return iter_image_batches(source, *args, preprocess=get_profile(profile), **kwargs)


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
    with pytest.raises(NonFiniteFeaturesError, match=r"rows 13\b"):
        inception_score(bad, splits=2)


# --------------------------------------------------------------------------- from images
#
# The Inception Score of images is defined on z = pool3·Wᵀ, without the fc bias
# (improved-gan's tf.matmul(pool3, w), torch-fidelity's and torchmetrics'
# "logits_unbiased"). The reference below takes the pool3 features of a random-weight
# FID Inception, multiplies them by W in float64 and does softmax / KL in numpy.

N_IMAGES = 8
LOG_C = float(np.log(1008))


def _images() -> np.ndarray:
    """8 small RGB images of different colours and stripe frequencies (uint8)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (N_IMAGES, 1, 1, 3))
    yy, xx = np.mgrid[0:24, 0:24]
    freq = rng.uniform(0.1, 1.0, (N_IMAGES, 1, 1))
    stripes = 0.5 + 0.5 * np.sin(freq * (xx + 2 * yy))
    return (base * stripes[..., None]).clip(0, 255).astype(np.uint8)


def naive_is_from_logits(z: np.ndarray, splits: int) -> np.ndarray:
    """Per-split IS of float64 logits with plain numpy softmax and KL."""
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = len(p)
    out = []
    for s in range(splits):
        part = p[s * n // splits : (s + 1) * n // splits]
        py = part.mean(axis=0, keepdims=True)
        kl = np.where(part > 0, part * (np.log(part) - np.log(py)), 0.0).sum(axis=1)
        out.append(np.exp(kl.mean()))
    return np.array(out)


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """A random FID Inception whose fc spreads these images over the classes.

    Random convolutions give pool3 features that vary little between images, so the
    fc weights W act on the 64 features that vary most (standardised), and the fc
    bias b is large: IS with and without b then differ clearly. Returns the images,
    the weights file, float64 pool3 features (same batch as the metric), W and b.
    """
    import warnings

    import torch

    import fideval
    from fideval.features.inception import InceptionExtractor, seeded_random_state_dict

    images = _images()
    sd = seeded_random_state_dict(7)
    root = tmp_path_factory.mktemp("is-weights")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not the official weights: expected here
        torch.save(sd, root / "conv.pth")
        ex = InceptionExtractor(2048, weights=root / "conv.pth", device="cpu")
        side = fideval.streaming.collect(
            images, ex, features="required", batch_size=N_IMAGES, num_workers=0
        )
        feats = torch.from_numpy(side.features)
    f = feats.double()
    cv = f.std(dim=0) / f.mean(dim=0).clamp_min(1e-12)
    top = torch.topk(cv, 64).indices
    g = torch.Generator().manual_seed(1)
    w = torch.zeros(1008, 2048, dtype=torch.float64)
    w[:, top] = 0.3 * torch.randn(1008, 64, generator=g, dtype=torch.float64) / f[:, top].std(0)
    b = 3.0 * torch.randn(1008, generator=g, dtype=torch.float64)
    sd["fc.weight"] = w.float()
    sd["fc.bias"] = b.float()
    torch.save(sd, root / "is.pth")
    return {
        "images": images,
        "weights": root / "is.pth",
        "pool3": feats.numpy().astype(np.float64),  # the float32 features, exactly
        "W": sd["fc.weight"].numpy().astype(np.float64),
        "b": sd["fc.bias"].numpy().astype(np.float64),
    }


def _extractor(weights):
    import warnings

    from fideval.features.inception import InceptionExtractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return InceptionExtractor(2048, weights=weights, device="cpu")


@pytest.mark.slow
def test_is_from_images_uses_logits_without_bias(random_inception):
    """fideval's IS of images equals an independent pool3·Wᵀ + numpy reference.

    Tolerance: fideval's logits are float32, the reference's float64. If every logit
    moves by at most ε, each entropy H(p) and H(p̄) moves by at most 4ε·log C along
    the path (|dH| ≤ 2ε·Σ p|log p + H| ≤ 4ε·H ≤ 4ε·log C), so mean KL = H(p̄) − mean
    H(p) moves by at most 8ε·log C and IS relatively by expm1(8ε·log C). ε is the
    largest measured logit difference on the same batch; it must itself be within
    the float32 dot-product bound γ_d·(|p|·|W|ᵀ), which no fc bias (|b| ~ 3) is.
    """
    import torch

    import fideval

    r = random_inception
    ex = _extractor(r["weights"])
    p, w, b = r["pool3"], r["W"], r["b"]
    z_ref, zb_ref = p @ w.T, p @ w.T + b

    (batch,) = list(profile_batches(r["images"], batch_size=N_IMAGES, num_workers=0))
    z32 = ex.logits(batch).double().numpy()  # the default: no bias
    zb32 = ex.logits(batch, bias=True).double().numpy()
    u = 2.0**-24
    gamma = 2048 * u / (1 - 2048 * u)
    bound = gamma * (np.abs(p) @ np.abs(w).T) + u * np.abs(z_ref)
    assert np.all(np.abs(z32 - z_ref) <= bound)
    assert np.all(np.abs(zb32 - zb_ref) <= bound + u * (np.abs(b) + np.abs(zb_ref)))
    assert np.abs(z32 - zb_ref).max() > 100 * bound.max()  # the default is not biased
    torch.testing.assert_close(ex.features_and_logits(batch)[1], ex.logits(batch), rtol=0, atol=0)

    splits = 2
    for bias, z64, z32_ in ((False, z_ref, z32), (True, zb_ref, zb32)):
        ref = naive_is_from_logits(z64, splits)
        eps = float(np.abs(z32_ - z64).max())
        tol = np.expm1(8 * eps * LOG_C) + 1e-12
        net = fideval.extractor("inception", weights=r["weights"], device="cpu", logits_bias=bias)
        side = fideval.streaming.collect(
            r["images"], net, logits=True, batch_size=N_IMAGES, num_workers=0
        )
        res = inception_score(side.logits, splits=splits)
        np.testing.assert_allclose(res.values, ref, rtol=tol, atol=0)
        assert res.value == pytest.approx(ref.mean(), rel=tol)
        assert side.logits.shape == (N_IMAGES, 1008)
        assert side.meta["extractor"] == "inception-v3-fid"
        one_pass = fideval.evaluate(
            r["images"],
            None,
            ["is"],
            extractor=net,
            batch_size=N_IMAGES,
            num_workers=0,
            is_options={"splits": splits},
        )
        assert one_pass["is"] == res.value and one_pass["is_std"] == res.std
    # The bias moves the score far beyond the float32 tolerance.
    gap = abs(
        naive_is_from_logits(z_ref, splits).mean() / naive_is_from_logits(zb_ref, splits).mean() - 1
    )
    assert gap > 0.05
    # Logits given directly carry no bias flag: they are used as given.
    assert "logits_bias" not in inception_score(z_ref, splits=splits).to_dict()


@pytest.mark.slow
def test_is_from_images_rejects_a_non_boolean_bias(random_inception):
    import fideval

    with pytest.raises(FidevalError, match="logits_bias='yes' is not one of False, True"):
        fideval.extractor("inception", weights=random_inception["weights"], logits_bias="yes")
