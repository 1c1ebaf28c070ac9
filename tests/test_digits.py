"""Digits CNN extractor (shipped weights, recipe, determinism) and the tiny demo diffusion model."""

from __future__ import annotations

import hashlib
import io
from importlib import resources

import numpy as np
import pytest
import torch

from fideval.errors import FidevalError
from fideval.features.digits import (
    DigitsCNN,
    DigitsFeatureExtractor,
    digits_recipe,
    digits_split,
    load_digits_arrays,
    load_digits_images,
)
from fideval.train.demo_diffusion import EMA, TinyDiffusion, make_optimizer, train_step

pytest.importorskip("sklearn", reason="the digits data set ships with scikit-learn (extra 'demo')")


def _weights_bytes() -> bytes:
    return (
        resources.files("fideval.features").joinpath("weights").joinpath("digits_cnn.pt")
    ).read_bytes()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread is faster, and far faster on a busy CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def extractor() -> DigitsFeatureExtractor:
    return DigitsFeatureExtractor()


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_digits_images()


# --------------------------------------------------------------------------- weights


def test_weights_small_and_sha_matches_recipe(extractor: DigitsFeatureExtractor) -> None:
    raw = _weights_bytes()
    recipe = digits_recipe()
    assert len(raw) < 200_000
    assert recipe["weights_bytes"] == len(raw)
    sha = hashlib.sha256(raw).hexdigest()
    assert sha == recipe["weights_sha256"] == extractor.weights_sha256
    for key in ("architecture", "training", "data", "heldout_accuracy", "versions"):
        assert key in recipe
    assert recipe["training"]["optimizer"]["name"]
    assert recipe["versions"]["torch"]


def test_split_is_stratified_and_matches_recipe() -> None:
    _, labels = load_digits_arrays()
    recipe = digits_recipe()["data"]
    train_idx, test_idx = digits_split(
        labels, seed=recipe["split_seed"], test_fraction=recipe["test_fraction"]
    )
    assert len(train_idx) == recipe["n_train"] and len(test_idx) == recipe["n_test"]
    assert np.intersect1d(train_idx, test_idx).size == 0
    assert len(train_idx) + len(test_idx) == len(labels)
    assert (
        hashlib.sha256(test_idx.astype("<i8").tobytes()).hexdigest()
        == recipe["test_indices_sha256"]
    )
    per_class_test = np.bincount(labels[test_idx], minlength=10)
    per_class_all = np.bincount(labels, minlength=10)
    assert np.all(np.abs(per_class_test - 0.2 * per_class_all) <= 0.5 + 1e-9)
    # same seed → same split; different seed → different split
    assert np.array_equal(digits_split(labels, seed=recipe["split_seed"])[1], test_idx)
    assert not np.array_equal(digits_split(labels, seed=recipe["split_seed"] + 1)[1], test_idx)


def test_heldout_accuracy_reproduces_recipe(extractor: DigitsFeatureExtractor) -> None:
    images, labels = load_digits_arrays()
    recipe = digits_recipe()
    _, test_idx = digits_split(
        labels, seed=recipe["data"]["split_seed"], test_fraction=recipe["data"]["test_fraction"]
    )
    x = torch.from_numpy((images[test_idx] / 16.0).astype(np.float32)).unsqueeze(1)
    with torch.inference_mode():
        logits = extractor.net(x)
    # An exact accuracy is machine-independent only if no prediction is a near tie: the
    # top-2 logit margin must dwarf float32 kernel differences (~1e-5 at |logit| ≤ 30).
    top2 = logits.topk(2, dim=1).values
    assert float((top2[:, 0] - top2[:, 1]).min()) > 1e-3
    pred = logits.argmax(dim=1).numpy()
    acc = float((pred == labels[test_idx]).sum()) / float(len(test_idx))
    assert acc == pytest.approx(recipe["heldout_accuracy"], abs=1e-9)
    assert acc >= 0.97


def test_load_digits_images(digits: torch.Tensor) -> None:
    assert digits.shape == (1797, 1, 8, 8)
    assert digits.dtype == torch.float32
    assert float(digits.min()) == 0.0 and float(digits.max()) == 1.0


# --------------------------------------------------------------------------- extractor


def test_extractor_attributes(extractor: DigitsFeatureExtractor) -> None:
    assert extractor.id == "digits-cnn"
    assert extractor.dims == 64
    assert extractor.profile == "digits-8x8-unit"
    prov = extractor.provenance()
    assert prov == {
        "extractor": "digits-cnn",
        "weights_sha256": extractor.weights_sha256,
        "dims": 64,
        "profile": "digits-8x8-unit",
        "image_size": 8,
    }
    assert not extractor.training
    extractor.train()  # frozen: stays in eval mode
    assert not extractor.training and not extractor.net.training
    assert all(not p.requires_grad for p in extractor.parameters())


def test_extractor_output_shape_dtype_determinism(
    extractor: DigitsFeatureExtractor, digits: torch.Tensor
) -> None:
    x = digits[:100]
    f1 = extractor(x)
    f2 = extractor(x.squeeze(1).double())  # (B, 8, 8) and float64 input accepted
    assert f1.shape == (100, 64) and f1.dtype == torch.float32
    assert torch.equal(f1, extractor(x))
    torch.testing.assert_close(f1, f2, rtol=0, atol=1e-5)
    assert not f1.requires_grad and torch.isfinite(f1).all()


def test_extractor_covariance_full_rank(
    extractor: DigitsFeatureExtractor, digits: torch.Tensor
) -> None:
    f = extractor(digits).double()
    w = torch.linalg.eigvalsh(torch.cov(f.T))
    assert float(w.min()) > 1e-6 * float(w.max())


def test_extractor_rejects_bad_input(extractor: DigitsFeatureExtractor) -> None:
    with pytest.raises(FidevalError, match=r"\(B, 1, 8, 8\)"):
        extractor(torch.zeros(2, 2, 8, 8))
    with pytest.raises(FidevalError, match=r"\(B, 1, 8, 8\)"):
        extractor(torch.zeros(2, 1, 16, 16))
    with pytest.raises(FidevalError, match="dtype"):
        extractor(torch.zeros(2, 1, 8, 8, dtype=torch.int32))


def test_extractor_contract_inputs(extractor: DigitsFeatureExtractor) -> None:
    """uint8 images are /255 and 3-channel gray (as folders give) is its channel mean."""
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (4, 1, 8, 8), generator=g, dtype=torch.uint8)
    want = extractor(u8.float() / 255)
    torch.testing.assert_close(extractor(u8), want, atol=0, rtol=0)
    torch.testing.assert_close(extractor(u8.expand(-1, 3, -1, -1)), want, atol=0, rtol=0)


def test_digits_cnn_state_dict_roundtrip() -> None:
    m = DigitsCNN()
    state = torch.load(io.BytesIO(_weights_bytes()), map_location="cpu", weights_only=True)
    m.load_state_dict(state)  # strict: architecture matches the shipped weights


# --------------------------------------------------------------------------- diffusion


def _tiny_model(**kw: object) -> TinyDiffusion:
    torch.manual_seed(0)
    return TinyDiffusion(hidden=64, depth=2, time_dim=32, sampling_steps=10, **kw)


def test_sample_shape_range_and_seeded_reproducibility() -> None:
    model = _tiny_model()
    out = model.sample(batch_size=7, generator=torch.Generator().manual_seed(3))
    assert out.shape == (7, 1, 8, 8) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    again = model.sample(batch_size=7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    other = model.sample(batch_size=7, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(out, other)
    det = model.sample(batch_size=3, steps=5, eta=0.0, generator=torch.Generator().manual_seed(0))
    assert det.shape == (3, 1, 8, 8)
    assert model.training  # sampling restores the mode


def test_training_loss_finite_and_decreases(digits: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = TinyDiffusion(hidden=128, depth=2, time_dim=32, sampling_steps=10)
    opt = make_optimizer(model, lr=2e-3)
    ema = EMA(model, decay=0.99)
    gen = torch.Generator().manual_seed(0)
    fixed = torch.Generator().manual_seed(1)
    batch = digits[:256]

    def eval_loss() -> float:
        fixed.manual_seed(1)
        with torch.no_grad():
            return float(model.training_loss(batch, generator=fixed))

    before = eval_loss()
    assert np.isfinite(before)
    losses = []
    for _ in range(60):
        idx = torch.randint(0, len(digits), (64,), generator=gen)
        losses.append(train_step(model, opt, digits[idx], ema=ema, generator=gen))
    after = eval_loss()
    assert all(np.isfinite(losses))
    assert after < 0.8 * before, (before, after)
    assert ema.updates == 60
    # EMA weights differ from the live ones but are finite
    ema_p = torch.cat([p.flatten() for p in ema.model.parameters()])
    assert torch.isfinite(ema_p).all()


def test_training_loss_rejects_bad_shape() -> None:
    with pytest.raises(FidevalError, match="expected images"):
        _tiny_model().training_loss(torch.zeros(4, 8, 8))
