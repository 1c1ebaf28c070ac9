"""The FID Inception-v3 written in fideval: structure, outputs, extractor contract."""

from __future__ import annotations

import hashlib
import warnings

import pytest
import torch

import fideval
from fideval.errors import FidevalError
from fideval.features.inception import (
    BLOCK_INDEX_BY_DIM,
    LOGITS,
    LOGITS_NO_BIAS,
    FIDInceptionV3,
    InceptionExtractor,
    seeded_random_state_dict,
)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "random-inception.pth"
    torch.save(seeded_random_state_dict(3), path)
    return path


@pytest.fixture(scope="module")
def extractor(weights_file):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return InceptionExtractor(2048, weights=weights_file, device="cpu")


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 299, 299, generator=g) * 2 - 1


def test_state_dict_keys_equal_pytorch_fid():
    pfi = pytest.importorskip("pytorch_fid.inception")
    pytest.importorskip("torchvision")
    # pytorch-fid's network before its weights are loaded: torchvision's Inception-v3
    # with 1008 classes, no aux classifier, and the FID blocks patched in.
    import torchvision

    with torch.device("meta"):  # shapes and names only
        ref = torchvision.models.inception_v3(
            weights=None, aux_logits=False, num_classes=1008, init_weights=False
        )
        _patch_fid_blocks(ref, pfi)
    with torch.device("meta"):
        ours = FIDInceptionV3().state_dict()
    theirs = ref.state_dict()
    assert list(ours) == list(theirs)  # same names, same order
    for key in ours:
        assert ours[key].shape == theirs[key].shape, key
        assert ours[key].dtype == theirs[key].dtype, key


def _patch_fid_blocks(ref, pfi):
    ref.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    ref.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    ref.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    ref.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    ref.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    ref.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    ref.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    ref.Mixed_7b = pfi.FIDInceptionE_1(1280)
    ref.Mixed_7c = pfi.FIDInceptionE_2(2048)


def test_structure_without_reference():
    with torch.device("meta"):
        sd = FIDInceptionV3().state_dict()
    assert len(sd) == 566
    assert sd["fc.weight"].shape == (1008, 2048)
    assert sd["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert sd["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert not any(k.startswith("AuxLogits") for k in sd)
    assert not any(k.endswith("conv.bias") for k in sd)  # convolutions have no bias
    assert FIDInceptionV3().Mixed_5b.branch1x1.bn.eps == pytest.approx(1e-3)


def test_network_is_eval_only():
    net = FIDInceptionV3()
    assert not net.training
    assert all(not m.training for m in net.modules())
    with pytest.raises(RuntimeError, match="evaluation"):
        net.train()
    net.eval()  # allowed


@pytest.mark.slow
def test_extractor_contract(extractor, images, weights_file):
    feats = extractor.features(images)  # preprocessed network input (the workers' fast path)
    assert feats.shape == (1, 2048)
    assert feats.dtype == torch.float32
    assert not feats.requires_grad
    assert torch.isfinite(feats).all()
    assert (feats >= 0).all()  # average of ReLU outputs
    assert extractor.id == "inception-v3-fid"
    assert extractor.dims == 2048
    assert extractor.profile == "pytorch-fid"
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert extractor.weights_sha256 == digest
    prov = extractor.provenance()
    assert prov["extractor"] == "inception-v3-fid"
    assert prov["weights_sha256"] == digest
    assert prov["weights_official"] is False
    assert prov["dims"] == 2048
    assert prov["profile"] == "pytorch-fid"
    assert prov["image_size"] == 299
    assert prov["dtype"] == "float32"
    assert all(not p.requires_grad for p in extractor.net.parameters())
    # The contract: raw uint8 images in, through the extractor's own profile.
    assert isinstance(extractor, fideval.Extractor) and isinstance(extractor, torch.nn.Module)
    raw = torch.randint(
        0, 256, (2, 1, 40, 30), generator=torch.Generator().manual_seed(1), dtype=torch.uint8
    )  # grayscale, any size
    want = extractor.features(extractor.worker_preprocess(raw.expand(-1, 3, -1, -1)))
    torch.testing.assert_close(extractor(raw), want, atol=0, rtol=0)
    torch.testing.assert_close(extractor(raw.float() / 255), want, atol=1e-6, rtol=0)
    extractor.train()
    assert not extractor.training and not extractor.net.training


@pytest.mark.slow
def test_all_outputs_one_pass_consistent(extractor, images):
    out = extractor.outputs(images, (64, 192, 768, 2048, LOGITS))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        64: (1, 64),
        192: (1, 192),
        768: (1, 768),
        2048: (1, 2048),
        LOGITS: (1, 1008),
    }
    # logits are the classifier applied to the pool3 features
    fc = extractor.net.fc
    torch.testing.assert_close(out[LOGITS], fc(out[2048]).detach(), atol=1e-5, rtol=1e-5)
    # a pass that stops early (dims 64 only runs block 0) gives the same 64 features
    torch.testing.assert_close(extractor.outputs(images, (64,))[64], out[64], atol=0, rtol=0)
    f, lg = extractor.features_and_logits(images)
    torch.testing.assert_close(f, out[2048], atol=0, rtol=0)
    # the Inception Score's logits: pool3·Wᵀ, no fc bias (improved-gan, torch-fidelity)
    no_bias = extractor.outputs(images, (LOGITS_NO_BIAS,))[LOGITS_NO_BIAS]
    torch.testing.assert_close(lg, no_bias, atol=0, rtol=0)
    f_b, lg_b = extractor.features_and_logits(images, bias=True)
    torch.testing.assert_close(f_b, out[2048], atol=0, rtol=0)
    torch.testing.assert_close(lg_b, out[LOGITS], atol=0, rtol=0)


@pytest.mark.slow
def test_logits_default_has_no_fc_bias(extractor, weights_file, images):
    """logits() is pool3·Wᵀ (float64 reference, float32 dot-product bound) unless asked.

    The bound |fl(p·w) − p·w| ≤ γ_d·|p|·|w| (γ_d = d·u/(1 − d·u), u = 2⁻²⁴) plus the
    final rounding; the fc bias of the random weights (0.1·N(0, 1)) is far above it.
    """
    pool3 = extractor.features(images).double()
    w = extractor.net.fc.weight.double()
    b = extractor.net.fc.bias.double()
    ref = pool3 @ w.T
    u = 2.0**-24
    bound = 2048 * u / (1 - 2048 * u) * (pool3.abs() @ w.abs().T) + u * ref.abs()
    assert bool(((extractor.logits(images).double() - ref).abs() <= bound).all())
    with_bias = extractor.logits(images, bias=True).double()
    assert bool(((with_bias - ref - b).abs() <= bound + u * (b.abs() + with_bias.abs())).all())
    assert float((with_bias - ref).abs().max()) > 100 * float(bound.max())
    # The extractor-wide default can be switched; an explicit bias= wins over it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        biased = InceptionExtractor(2048, weights=weights_file, device="cpu", logits_bias=True)
    assert biased.logits_bias and not extractor.logits_bias
    torch.testing.assert_close(biased.logits(images), with_bias.float(), atol=0, rtol=0)
    torch.testing.assert_close(
        biased.logits(images, bias=False), extractor.logits(images), atol=0, rtol=0
    )
    torch.testing.assert_close(
        biased.features_and_logits(images)[1], with_bias.float(), atol=0, rtol=0
    )


@pytest.mark.slow
def test_channels_last_matches_contiguous(weights_file, extractor, images):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = InceptionExtractor(2048, weights=weights_file, device="cpu", channels_last=False)
    assert extractor.channels_last and not plain.channels_last
    a = extractor.outputs(images, (768, 2048))
    b = plain.outputs(images, (768, 2048))
    for k in a:
        assert (a[k] - b[k]).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(2, 3, 64, 64), "299x299"),
        (torch.zeros(2, 1, 299, 299), r"\(B, 3, 299, 299\)"),
        (torch.zeros(3, 299, 299), r"\(B, 3, 299, 299\)"),
        (torch.full((1, 3, 299, 299), 255.0), r"\[-1, 1\]"),
        (torch.full((1, 3, 299, 299), float("nan")), r"\[-1, 1\]"),
    ],
)
def test_extractor_rejects_unprepared_input(extractor, bad, match):
    with pytest.raises(FidevalError, match=match):
        extractor.features(bad)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.full((1, 3, 8, 8), 255.0), r"float images must have values in \[0, 1\]"),
        (torch.full((1, 3, 8, 8), -0.5), r"\[-1, 1\]\? use \(x \+ 1\) / 2"),
        (torch.zeros(1, 2, 8, 8), "1 \\(gray\\), 3 \\(RGB\\) or 4 \\(RGBA\\) channels"),
    ],
)
def test_raw_images_out_of_contract_are_clear_errors(extractor, bad, match):
    with pytest.raises(FidevalError, match=match):
        extractor(bad)


def test_dims_choice(weights_file):
    assert BLOCK_INDEX_BY_DIM == {64: 0, 192: 1, 768: 2, 2048: 3}
    with pytest.raises(FidevalError, match="dims"):
        InceptionExtractor(100, weights=weights_file, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = InceptionExtractor(192, weights=weights_file, device="cpu", profile="clean")
    x = torch.zeros(1, 3, 299, 299)
    assert small(x).shape == (1, 192)
    assert small.provenance()["profile"] == "clean"
    assert small.provenance()["dims"] == 192


def test_wrong_state_dict_is_a_clear_error(tmp_path):
    sd = seeded_random_state_dict(0)
    del sd["fc.bias"]
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FidevalError, match=r"broken\.pth.*fc\.bias"):
            InceptionExtractor(2048, weights=path, device="cpu")


def test_fid_deviations_change_the_output():
    """The FID-specific pools are really used (a plain Inception gives other features)."""
    with torch.device("meta"):
        net = FIDInceptionV3()
    net.load_state_dict(seeded_random_state_dict(5), assign=True)
    x = torch.rand(1, 2048, 8, 8)
    block = net.Mixed_7c
    with torch.inference_mode():
        ours = block(x)
        block.pool = "avg"
        plain = block(x)
    # only the pool branch (the last 192 channels) differs
    assert torch.equal(ours[:, :-192], plain[:, :-192])
    assert not torch.allclose(ours[:, -192:], plain[:, -192:])
    # padding-excluding average pool: a constant map stays constant at the border
    from fideval.features.inception import _tf_avg_pool

    ones = torch.ones(1, 1, 5, 5)
    assert torch.equal(_tf_avg_pool(ones), ones)
