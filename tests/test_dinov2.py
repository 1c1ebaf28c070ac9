"""DINOv2 extractors: parity with timm under seeded random weights, the hub's position-embedding
resize, the two preprocessing profiles, weights loading and the extractor contract.

Tolerance: features ≤ 1e-5 absolute (on this CPU fideval and timm agree bit for bit: the same
float32 ops in the same order; 1e-5 leaves room for other BLAS / SDPA kernels, features being
O(1) with max |f| ≈ 5 after the final LayerNorm, so 1e-5 is ~2e-6 relative).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fideval.errors import FidevalError
from fideval.features.dinov2 import (
    DINOv2Extractor,
    DINOv2ViT,
    preprocess_dinov2,
    resize_pos_embed,
    seeded_random_state_dict,
)

TOL = 1e-5
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _images(seed: int, n: int, h: int, w: int, c: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # smooth content plus noise, so that resizing matters
    base = torch.rand(n, c, max(h // 8, 1), max(w // 8, 1), generator=g)
    smooth = F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    noisy = (0.8 * smooth + 0.2 * torch.rand(n, c, h, w, generator=g)) * 255
    return noisy.round().clamp(0, 255).to(torch.uint8)


def _edm2_reference_input(u8: torch.Tensor) -> torch.Tensor:
    """EDM2's resize_mode='torch', written out independently."""
    x = F.interpolate(u8.to(torch.float32), size=(224, 224), mode="bicubic", antialias=True)
    return (x / 255 - MEAN) / STD


def _pil_reference_input(u8: torch.Tensor) -> torch.Tensor:
    """dgm-eval's default: PIL bicubic to 224 on the uint8 image, ToTensor, Normalize."""
    out = []
    for img in u8.permute(0, 2, 3, 1).numpy():
        im = Image.fromarray(img, "RGB").resize((224, 224), Image.BICUBIC)
        out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    x = torch.stack(out).float().div(255)
    return (x - MEAN) / STD


def _timm_model(arch: str, depth: int | None, state: dict[str, torch.Tensor]):
    timm = pytest.importorskip("timm")
    name = {"vitl14": "vit_large_patch14_dinov2", "vitb14": "vit_base_patch14_dinov2"}[arch]
    kwargs = {} if depth is None else {"depth": depth}
    with torch.device("meta"):  # no random init; every tensor is assigned below
        model = timm.create_model(name, pretrained=False, num_classes=0, img_size=224, **kwargs)
    ref_state = {k: v for k, v in state.items() if k != "mask_token"}
    ref_state["pos_embed"] = resize_pos_embed(state["pos_embed"], 16, 16)  # pre-resized
    model.load_state_dict(ref_state, strict=True, assign=True)
    return model.eval()


# --------------------------------------------------------------------------- position embedding


def _cubic_weights(out_size: int, in_size: int, scale_factor: float) -> np.ndarray:
    """Bicubic (a = -0.75, align_corners=False) resampling matrix (out, in), float64.

    Source coordinate of output i: (i + 1/2) / scale_factor - 1/2; taps x0-1 .. x0+2
    clamped to the border, as PyTorch's upsample_bicubic2d does.
    """
    a = -0.75

    def k(t):
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        if t < 2:
            return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
        return 0.0

    m = np.zeros((out_size, in_size))
    for i in range(out_size):
        src = (i + 0.5) / scale_factor - 0.5
        x0 = math.floor(src)
        t = src - x0
        for j, dist in zip(range(x0 - 1, x0 + 3), (1 + t, t, 1 - t, 2 - t), strict=True):
            m[i, min(max(j, 0), in_size - 1)] += k(dist)
    return m


def test_pos_embed_resize_is_the_hubs_rule():
    g = torch.Generator().manual_seed(0)
    dim = 8
    pe = torch.randn(1, 1 + 37 * 37, dim, generator=g)
    got = resize_pos_embed(pe, 16, 16)
    assert got.shape == (1, 257, dim)
    assert torch.equal(got[:, 0], pe[:, 0])  # CLS row kept
    # independent: separable bicubic with scale_factor (16 + 0.1) / 37 on both axes
    w = _cubic_weights(16, 37, (16 + 0.1) / 37)
    grid = pe[0, 1:].double().numpy().reshape(37, 37, dim)
    want = np.einsum("ia,abd,jb->ijd", w, grid, w).reshape(256, dim)
    # PyTorch computes the source coordinates and cubic weights in float32 (37/16.1
    # rounded); a coordinate error of ~1e-6 patch times the kernel's slope (< 1.5) times
    # |values| (< 5 for N(0, 1)) stays below 2e-5 against this exact float64 reference
    np.testing.assert_allclose(got[0, 1:].double().numpy(), want, atol=2e-5, rtol=0)
    # the trap: size=(16, 16) (scale 37/16 in the source mapping) is far from it
    w_size = _cubic_weights(16, 37, 16 / 37)
    wrong = np.einsum("ia,abd,jb->ijd", w_size, grid, w_size).reshape(256, dim)
    assert np.abs(wrong - want).max() > 0.1
    # the checkpoint's own grid is used unchanged; non-square grids follow (rows, cols)
    assert resize_pos_embed(pe, 37, 37) is pe
    assert resize_pos_embed(pe, 12, 20).shape == (1, 1 + 240, dim)


# --------------------------------------------------------------------------- parity with timm


def test_reduced_depth_matches_timm_and_the_resize_rule_matters():
    state = seeded_random_state_dict("vitl14", seed=1, depth=2)
    net = DINOv2ViT(2, 1024, 16)
    net.load_state_dict(state, strict=True)
    net.eval()
    ref = _timm_model("vitl14", 2, state)
    x = _edm2_reference_input(_images(0, 2, 300, 260))
    with torch.inference_mode():
        ours, theirs = net(x), ref(x)
    assert ours.shape == (2, 1024) and ours.dtype == torch.float32
    err = (ours - theirs).abs().max().item()
    assert err <= TOL, err
    # letting the grid be resized with size=(16, 16) instead moves the features far past TOL
    grid = state["pos_embed"][:, 1:].reshape(1, 37, 37, 1024).permute(0, 3, 1, 2)
    by_size = F.interpolate(grid, size=(16, 16), mode="bicubic", align_corners=False)
    ref.pos_embed.data = torch.cat(
        (state["pos_embed"][:, :1], by_size.permute(0, 2, 3, 1).reshape(1, 256, 1024)), 1
    )
    with torch.inference_mode():
        wrong = ref(x)
    assert (wrong - ours).abs().max().item() > 1000 * TOL


@pytest.mark.slow
def test_full_vitl14_end_to_end_matches_timm():
    """The real ViT-L/14 configuration (24 blocks) through the extractor, edm2 profile."""
    state = seeded_random_state_dict("vitl14", seed=2)
    ext = DINOv2Extractor("vitl14", weights=state, device="cpu")
    ref = _timm_model("vitl14", None, state)
    images = _images(1, 2, 120, 170)  # non-square, upsampled
    with torch.inference_mode():
        want = ref(_edm2_reference_input(images))
    got = ext(images)
    assert got.shape == (2, 1024) and got.dtype == torch.float32
    err = (got - want).abs().max().item()
    assert err <= TOL, err
    assert got.abs().max() > 0.5  # not a degenerate (collapsed) feature


@pytest.mark.slow
def test_full_vitb14_dgm_eval_profile_matches_timm():
    state = seeded_random_state_dict("vitb14", seed=3)
    ext = DINOv2Extractor("vitb14", weights=state, device="cpu", profile="dgm-eval")
    ref = _timm_model("vitb14", None, state)
    images = _images(2, 1, 256, 256)
    with torch.inference_mode():
        want = ref(_pil_reference_input(images))
    got = ext(images)
    assert got.shape == (1, 768)
    err = (got - want).abs().max().item()
    assert err <= TOL, err


# --------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("size", [(300, 260), (64, 96), (224, 224)])
def test_edm2_profile_is_antialiased_bicubic_on_unrounded_floats(size):
    u8 = _images(3, 2, *size)
    got = preprocess_dinov2(u8, "edm2")
    want = _edm2_reference_input(u8)
    assert got.shape == (2, 3, 224, 224) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    if size != (224, 224):  # no rounding to uint8 after the resize
        rounded = (want * STD + MEAN) * 255
        assert (rounded - rounded.round()).abs().max() > 0.1
    else:  # same size: the antialiased bicubic is the identity
        torch.testing.assert_close(got, (u8.float() / 255 - MEAN) / STD, atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", [(300, 260), (64, 96)])
def test_dgm_eval_profile_is_pil_bicubic_rounded(size):
    u8 = _images(4, 2, *size)
    got = preprocess_dinov2(u8, "dgm-eval")
    torch.testing.assert_close(got, _pil_reference_input(u8), atol=1e-6, rtol=0)
    levels = (got * STD + MEAN) * 255
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)  # uint8 levels
    torch.testing.assert_close(preprocess_dinov2(u8, "pil"), got, atol=0, rtol=0)
    assert (got - preprocess_dinov2(u8, "edm2")).abs().max() > 1e-3  # the profiles differ


def test_inputs_gray_alpha_float_and_numpy():
    u8 = _images(5, 2, 50, 70)
    ref = preprocess_dinov2(u8, "edm2")
    gray = u8[:, :1]
    torch.testing.assert_close(
        preprocess_dinov2(gray, "edm2"), preprocess_dinov2(gray.expand(-1, 3, -1, -1), "edm2")
    )
    rgba = torch.cat((u8, torch.zeros_like(u8[:, :1])), 1)
    torch.testing.assert_close(preprocess_dinov2(rgba, "edm2"), ref, atol=0, rtol=0)
    as_float = u8.float() / 255  # floats in [0, 1] are rounded back to the same uint8
    torch.testing.assert_close(preprocess_dinov2(as_float, "edm2"), ref, atol=0, rtol=0)
    nhwc = u8.permute(0, 2, 3, 1).numpy()
    torch.testing.assert_close(preprocess_dinov2(nhwc, "edm2"), ref, atol=0, rtol=0)
    with pytest.raises(FidevalError, match=r"\[0, 1\]"):
        preprocess_dinov2(u8.float(), "edm2")  # floats in [0, 255]
    with pytest.raises(FidevalError, match="profile 'clean'"):
        preprocess_dinov2(u8, "clean")


# --------------------------------------------------------------------------- contract and weights


@pytest.fixture(scope="module")
def vitb14_state():
    return seeded_random_state_dict("vitb14", seed=7)


@pytest.mark.slow
def test_contract_and_weights_file(tmp_path, vitb14_state):
    path = tmp_path / "dinov2_vitb14_pretrain.pth"
    torch.save(vitb14_state, path)
    ext = DINOv2Extractor("vitb14", weights=path, device="cpu", profile="pil")
    assert isinstance(ext, torch.nn.Module) and not ext.training
    ext.train()
    assert not ext.training and not ext.net.training
    assert all(not p.requires_grad for p in ext.parameters())
    assert (ext.id, ext.dims, ext.profile, ext.image_size) == (
        "dinov2-vitb14",
        768,
        "dgm-eval",
        224,
    )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert ext.weights_sha256 == digest
    meta = ext.provenance()
    assert {"extractor", "weights_sha256", "dims", "profile", "image_size"} <= set(meta)
    assert meta["extractor"] == "dinov2-vitb14" and meta["weights_sha256"] == digest
    assert meta["profile"] == "dgm-eval" and meta["weights_file"] == path.name
    feats = ext(_images(6, 1, 40, 40))
    assert feats.shape == (1, 768) and feats.dtype == torch.float32
    # the same tensors given as a dict: the same features, identified by the dict's digest
    ext2 = DINOv2Extractor("vitb14", weights=vitb14_state, device="cpu", profile="dgm-eval")
    assert ext2.weights_sha256 != digest and "weights_file" not in ext2.provenance()
    assert torch.equal(ext2(_images(6, 1, 40, 40)), feats)


@pytest.mark.slow
def test_loading_is_strict_and_errors_name_the_source(tmp_path, vitb14_state):
    without_mask = {k: v for k, v in vitb14_state.items() if k != "mask_token"}
    DINOv2Extractor("vitb14", weights=without_mask, device="cpu")  # mask_token optional
    missing = {k: v for k, v in vitb14_state.items() if k != "norm.bias"}
    path = tmp_path / "broken.pth"
    torch.save(missing, path)
    with pytest.raises(FidevalError) as err:
        DINOv2Extractor("vitb14", weights=path, device="cpu")
    msg = str(err.value)
    assert str(path) in msg and "norm.bias" in msg and "\n" not in msg
    extra = dict(vitb14_state, **{"head.weight": torch.zeros(2)})
    with pytest.raises(FidevalError, match=r"head\.weight"):
        DINOv2Extractor("vitb14", weights=extra, device="cpu")
    with pytest.raises(FidevalError, match="dinov2-vitb14"):
        DINOv2Extractor("vitl14", weights=vitb14_state, device="cpu")  # width 768 ≠ 1024
    with pytest.raises(FidevalError, match="architecture"):
        DINOv2Extractor("vitg14", weights=vitb14_state)


def test_offline_lookup_names_the_file_url_and_edm2_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DNNLIB_CACHE_DIR", raising=False)
    monkeypatch.delenv("FIDEVAL_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    with pytest.raises(FidevalError) as err:
        DINOv2Extractor("vitl14", download=False)
    msg = str(err.value)
    assert "dinov2_vitl14_pretrain.pth" in msg
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth" in msg
    assert str(tmp_path / "home" / ".cache" / "dnnlib" / "torch_hub" / "checkpoints") in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg


def test_full_float32_switches_off_cudnn_tf32_only_inside():
    from fideval.features._vit import full_float32

    before = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        with full_float32(torch.device("cuda")):  # constructing the device needs no GPU
            assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is True
        with full_float32(torch.device("cpu")):
            assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32 = before
