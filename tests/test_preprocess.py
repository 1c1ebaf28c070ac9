"""Preprocessing profiles: exact formulas, quantization by rounding, layouts and channels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fideval.errors import FidevalError
from fideval.features.preprocess import (
    PROFILES,
    get_profile,
    pil_bicubic_resize,
    preprocess_batch,
    preprocess_image,
    quantize_uint8,
    to_nchw,
)


@pytest.fixture
def u8_images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(3, 20, 27, 3), dtype=np.uint8)  # NHWC, non-square


# --------------------------------------------------------------------------- quantization


def test_quantize_exact_levels_roundtrip():
    k = np.arange(256)
    assert np.array_equal(quantize_uint8(k / 255.0).numpy(), k)
    assert np.array_equal(quantize_uint8((k / 255.0).astype(np.float32)).numpy(), k)


def test_quantize_rounds_half_up_never_truncates():
    k = np.arange(255)
    half = (k + 0.5) / 255.0  # float64: exactly on the boundary after * 255
    assert np.array_equal(quantize_uint8(half).numpy(), k + 1)
    assert np.array_equal(quantize_uint8(half - 1e-9).numpy(), k)
    assert np.array_equal(quantize_uint8(half + 1e-9).numpy(), k + 1)
    # 0.5/255 is the first boundary: truncation would give 0 for everything below 1/255
    assert quantize_uint8(np.array([0.5 / 255])).item() == 1
    assert quantize_uint8(np.array([0.49 / 255])).item() == 0
    assert quantize_uint8(np.array([254.5 / 255])).item() == 255
    assert quantize_uint8(np.array([0.999])).item() == 255  # 254.745 -> 255
    # just below a level: truncation would drop it by one, rounding keeps it
    assert quantize_uint8(np.array([np.nextafter(100 / 255, 0)])).item() == 100


def test_quantize_float32_halves_land_on_a_neighbour_level():
    half32 = ((np.arange(255) + 0.5) / 255.0).astype(np.float32)
    q = quantize_uint8(half32).numpy().astype(np.float64)
    assert np.all(np.abs(q - half32.astype(np.float64) * 255) <= 0.5 + 1e-6)


def test_quantize_passes_uint8_and_checks_ranges():
    x = np.array([[0, 7, 255]], dtype=np.uint8)
    assert np.array_equal(quantize_uint8(x).numpy(), x)
    assert quantize_uint8(np.array([3, 250], dtype=np.int64)).dtype == torch.uint8
    with pytest.raises(FidevalError, match=r"\[0, 1\].*\(x \+ 1\) / 2"):
        quantize_uint8(np.array([-1.0, 0.5]))
    with pytest.raises(FidevalError, match=r"\[0, 1\].*uint8"):
        quantize_uint8(np.array([0.0, 200.0]))
    with pytest.raises(FidevalError, match=r"\[0, 255\]"):
        quantize_uint8(np.array([0, 300], dtype=np.int32))


# --------------------------------------------------------------------------- pytorch-fid


def test_pytorch_fid_profile_formula(u8_images):
    out = preprocess_batch(u8_images, "pytorch-fid")
    x = torch.from_numpy(u8_images).permute(0, 3, 1, 2).float() / 255
    ref = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
    assert out.shape == (3, 3, 299, 299) and out.dtype == torch.float32
    assert torch.equal(out, ref)
    assert out.min() >= -1 and out.max() <= 1


def test_pytorch_fid_profile_float_equals_uint8(u8_images):
    floats = u8_images.astype(np.float32) / 255
    assert torch.equal(
        preprocess_batch(floats, "pytorch-fid"), preprocess_batch(u8_images, "pytorch-fid")
    )


def test_pytorch_fid_matches_its_torchvision_pipeline(u8_images):
    """pytorch-fid reads files with ToTensor() and resizes inside its network."""
    tf = pytest.importorskip("torchvision.transforms")
    from PIL import Image

    img = Image.fromarray(u8_images[0])
    x = tf.ToTensor()(img)[None]
    ref = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
    assert torch.equal(preprocess_image(u8_images[0], "pytorch-fid")[None], ref)


def test_per_image_equals_batch(u8_images):
    for name in PROFILES:
        batch = preprocess_batch(u8_images, name)
        singles = torch.stack([preprocess_image(im, name) for im in u8_images])
        assert torch.equal(batch, singles), name


# --------------------------------------------------------------------------- clean


def test_clean_profile_formula(u8_images):
    out = preprocess_batch(u8_images, "clean")
    resized = np.stack([pil_bicubic_resize(im) for im in u8_images])
    ref = (torch.from_numpy(resized).permute(0, 3, 1, 2) - 128) / 128
    assert torch.equal(out, ref)
    assert out.shape == (3, 3, 299, 299)
    assert out.min() >= -1 and out.max() <= 127 / 128


def test_clean_resize_equals_clean_fid(u8_images):
    resize = pytest.importorskip("cleanfid.resize")
    fn = resize.make_resizer("PIL", False, "bicubic", (299, 299))
    for im in u8_images:
        ours = pil_bicubic_resize(im)
        theirs = fn(im)
        assert ours.shape == theirs.shape == (299, 299, 3)
        assert ours.dtype == theirs.dtype == np.float32
        assert np.max(np.abs(ours - theirs)) <= 1e-6


def test_clean_quantizes_floats_by_rounding(u8_images):
    x = u8_images.astype(np.float64) / 255
    x = x + 0.4 / 255 * (np.arange(x.size).reshape(x.shape) % 2 * 2 - 1)  # +-0.4 level
    x = np.clip(x, 0, 1)
    assert torch.equal(preprocess_batch(x, "clean"), preprocess_batch(u8_images, "clean"))


# --------------------------------------------------------------------------- channels, layouts


def test_grayscale_and_rgba_become_rgb(u8_images):
    rgb = u8_images[:1]
    gray = rgb[..., 0]
    as_rgb = np.repeat(gray[..., None], 3, axis=-1)
    for name in PROFILES:
        ref_gray = preprocess_batch(as_rgb, name)
        assert torch.equal(preprocess_batch(gray, name), ref_gray)  # (N, H, W)
        assert torch.equal(preprocess_batch(gray[..., None], name), ref_gray)  # (N, H, W, 1)
        assert torch.equal(preprocess_image(gray[0], name), ref_gray[0])  # (H, W)
        rgba = np.concatenate([rgb, np.full_like(rgb[..., :1], 17)], axis=-1)
        assert torch.equal(preprocess_batch(rgba, name), preprocess_batch(rgb, name))


def test_layouts(u8_images):
    nchw = torch.from_numpy(u8_images).permute(0, 3, 1, 2).contiguous()
    ref = preprocess_batch(u8_images, "pytorch-fid")
    assert torch.equal(preprocess_batch(nchw, "pytorch-fid"), ref)  # tensor, channels first
    assert torch.equal(preprocess_batch(nchw.numpy(), "pytorch-fid"), ref)  # (N, 3, H, W) numpy
    assert torch.equal(preprocess_image(nchw[0], "pytorch-fid"), ref[0])
    assert to_nchw(np.zeros((2, 5, 6, 4), np.uint8)).shape == (2, 3, 5, 6)
    with pytest.raises(FidevalError, match="channels"):
        to_nchw(np.zeros((2, 5, 6, 2), np.uint8))
    with pytest.raises(FidevalError, match="shape"):
        to_nchw(np.zeros((5, 6), np.uint8))


def test_unknown_profile():
    with pytest.raises(FidevalError, match="clean"):
        get_profile("tf")
    assert get_profile("clean").provenance() == {"profile": "clean", "image_size": 299}
