"""CLIP ViT-L/14@336 (CMMD): parity with open_clip's ViT-L-14-336-quickgelu under seeded random
weights, CMMD's preprocessing against PIL, and the three weights formats (OpenAI TorchScript
archive read without running it, the original CMMD's .npy, plain state dicts).

Tolerance: 1e-5 absolute on the L2-normalized 768-d embeddings (entries ~0.04); fideval and
open_clip differ only in the attention kernel (nn.MultiheadAttention vs scaled_dot_product_attention
on the same [q; k; v] projection), ~1e-7 measured here.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fideval.errors import FidevalError
from fideval.features import clip as C
from fideval.features.clip import (
    CLIPExtractor,
    CLIPVisionTower,
    load_clip_weights,
    preprocess_clip,
    seeded_random_state_dict,
)

TOL = 1e-5
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def _images(seed: int, n: int, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, max(h // 8, 1), max(w // 8, 1), generator=g)
    smooth = F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    return (
        ((0.8 * smooth + 0.2 * torch.rand(n, 3, h, w, generator=g)) * 255).round().to(torch.uint8)
    )


def _cmmd_reference_input(u8: torch.Tensor) -> torch.Tensor:
    """The original CMMD's io_util: crop the centred square, PIL bicubic, then CLIP's normalization."""
    out = []
    for img in u8.permute(0, 2, 3, 1).numpy():
        im = Image.fromarray(img, "RGB")
        w, h = im.size
        side = min(w, h)
        top, left = (h - side) // 2, (w - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((336, 336), Image.BICUBIC)
        out.append(torch.from_numpy(np.asarray(im).astype(np.float32)).permute(2, 0, 1))
    return (torch.stack(out) / 255.0 - MEAN) / STD


def _open_clip_small(layers: int, quick_gelu: bool = True):
    open_clip = pytest.importorskip("open_clip")
    with torch.device("meta"):
        model = open_clip.model.CLIP(
            embed_dim=768,
            vision_cfg=dict(image_size=336, layers=layers, width=1024, patch_size=14),
            text_cfg=dict(context_length=77, vocab_size=64, width=64, heads=1, layers=1),
            quick_gelu=quick_gelu,
        )
    return model


# --------------------------------------------------------------------------- parity with open_clip


@pytest.mark.slow
def test_reduced_depth_matches_open_clip_quickgelu():
    state = seeded_random_state_dict(seed=1, layers=2)
    net = CLIPVisionTower(layers=2)
    net.load_state_dict(state, strict=True)
    net.eval()
    ref = _open_clip_small(2)
    ref.visual.load_state_dict(state, strict=True, assign=True)  # same keys as OpenAI's visual.*
    ref.eval()
    x = _cmmd_reference_input(_images(0, 2, 300, 400))
    with torch.inference_mode():
        ours = F.normalize(net(x), dim=-1)
        theirs = F.normalize(ref.encode_image(x), dim=-1)
    err = (ours - theirs).abs().max().item()
    assert err <= TOL, err
    # the exact-GELU tower (open_clip's plain 'ViT-L-14-336') is not the protocol
    gelu = _open_clip_small(2, quick_gelu=False)
    gelu.visual.load_state_dict(state, strict=True, assign=True)
    with torch.inference_mode():
        other = F.normalize(gelu.eval().encode_image(x), dim=-1)
    assert (other - ours).abs().max().item() > 50 * TOL  # ≈9e-4 already at 2 blocks


@pytest.fixture(scope="module")
def full_state():
    return seeded_random_state_dict(seed=2, prefix="visual.")


@pytest.mark.slow
def test_full_vitl14_336_end_to_end_matches_open_clip(full_state):
    """The real configuration (24 blocks, 336 px) through the extractor, against
    open_clip.create_model('ViT-L-14-336-quickgelu', pretrained=None).encode_image."""
    open_clip = pytest.importorskip("open_clip")
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        ref = open_clip.create_model("ViT-L-14-336-quickgelu", pretrained=None, device="meta")
    visual = {k[len("visual.") :]: v for k, v in full_state.items()}
    ref.visual.load_state_dict(visual, strict=True, assign=True)
    ref.eval()
    ext = CLIPExtractor(weights=full_state, device="cpu")
    images = _images(1, 1, 250, 180)  # portrait: the crop is vertical
    with torch.inference_mode():
        want = F.normalize(ref.encode_image(_cmmd_reference_input(images)), dim=-1)
    got = ext(images)
    assert got.shape == (1, 768) and got.dtype == torch.float32
    err = (got - want).abs().max().item()
    assert err <= TOL, err
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(1), atol=1e-6, rtol=0)
    # the extractor contract
    assert isinstance(ext, nn.Module) and not ext.training
    ext.train()
    assert not ext.training and not any(p.requires_grad for p in ext.parameters())
    assert (ext.id, ext.dims, ext.profile, ext.image_size) == ("clip-vitl14-336", 768, "cmmd", 336)
    meta = ext.provenance()
    assert {"extractor", "weights_sha256", "dims", "profile", "image_size"} <= set(meta)
    assert meta["extractor"] == "clip-vitl14-336" and meta["weights_format"] == "state-dict"
    assert len(meta["weights_sha256"]) == 64
    # bare keys give the same network and the same digest
    bare = {k[len("visual.") :]: v for k, v in full_state.items()}
    assert load_clip_weights(bare)[1]["sha256"] == meta["weights_sha256"]


# --------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("size", [(300, 400), (401, 250), (336, 336), (100, 120)])
def test_cmmd_preprocessing_is_centre_crop_then_pil_bicubic(size):
    u8 = _images(3, 2, *size)
    got = preprocess_clip(u8)
    assert got.shape == (2, 3, 336, 336) and got.dtype == torch.float32
    torch.testing.assert_close(got, _cmmd_reference_input(u8), atol=1e-6, rtol=0)
    levels = (got * STD + MEAN) * 255
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)  # uint8 levels
    if size == (336, 336):  # already square and 336: PIL's resize is the identity
        torch.testing.assert_close(got, (u8.float() / 255 - MEAN) / STD, atol=1e-6, rtol=0)


def test_crop_box_floors_the_offsets():
    # width 337 → left = 0 (not 1), so column 0 is kept and column 336 dropped
    u8 = torch.zeros(1, 3, 336, 337, dtype=torch.uint8)
    u8[..., 0] = 255
    got = preprocess_clip(u8)
    assert torch.allclose(got[0, :, :, 0], ((torch.ones(3) - MEAN.view(3)) / STD.view(3))[:, None])
    u8 = torch.zeros(1, 3, 336, 337, dtype=torch.uint8)
    u8[..., 336] = 255
    torch.testing.assert_close(preprocess_clip(u8), preprocess_clip(u8[..., :336]), atol=0, rtol=0)


def test_inputs_gray_alpha_float():
    u8 = _images(4, 2, 90, 60)
    ref = preprocess_clip(u8)
    torch.testing.assert_close(preprocess_clip(u8.float() / 255), ref, atol=0, rtol=0)
    rgba = torch.cat((u8, torch.full_like(u8[:, :1], 7)), 1)
    torch.testing.assert_close(preprocess_clip(rgba), ref, atol=0, rtol=0)
    gray = u8[:, 1:2]
    torch.testing.assert_close(
        preprocess_clip(gray), preprocess_clip(gray.expand(-1, 3, -1, -1)), atol=0, rtol=0
    )


# --------------------------------------------------------------------------- weights formats


class _OpenAILike(nn.Module):
    """An OpenAI-layout model (visual.* and a text-side parameter), for tracing."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    """A TorchScript archive laid out as OpenAI's (traced; matrices stored float16)."""
    state = seeded_random_state_dict(seed=5, layers=2)
    tower = CLIPVisionTower(layers=2)
    tower.load_state_dict(state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream
        traced = torch.jit.trace(_OpenAILike(tower).eval(), torch.zeros(1, 3, 336, 336))
        for _, p in traced.named_parameters():
            if p.ndim >= 2:
                p.data = p.data.half()  # as OpenAI's convert_weights leaves them
        path = tmp_path_factory.mktemp("clip") / "ViT-L-14-336px.pt"
        traced.save(str(path))
    want = {k: v.detach().float() for k, v in tower.state_dict().items()}
    want = {k: v.half().float() if v.ndim >= 2 else v for k, v in want.items()}
    return path, want


def _isolate(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("FIDEVAL_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("FIDEVAL_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path / "home" / ".cache"


@pytest.mark.slow
def test_torchscript_archive_is_read_without_running_it(small_archive, monkeypatch):
    path, want = small_archive

    def refuse(*a, **k):
        raise AssertionError("torch.jit.load must not be called")

    monkeypatch.setattr(torch.jit, "load", refuse)
    with pytest.warns(UserWarning, match="not comparable"):
        state, info = load_clip_weights(path)
    assert info["format"] == "openai-torchscript" and info["official"] is False
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(state) == sorted(want)  # visual.* only, prefix stripped, logit_scale dropped
    for k, v in want.items():
        assert state[k].dtype == torch.float32
        assert torch.equal(state[k], v), k


@pytest.mark.slow
def test_archive_found_in_the_clip_cache_and_verified(small_archive, tmp_path, monkeypatch):
    path, want = small_archive
    cache = _isolate(tmp_path, monkeypatch)
    (cache / "clip").mkdir(parents=True)
    target = cache / "clip" / "ViT-L-14-336px.pt"
    target.write_bytes(path.read_bytes())
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    with pytest.raises(FidevalError, match="3035c92b"):  # not OpenAI's file: refused
        load_clip_weights()
    monkeypatch.setattr(C, "OPENAI_SHA256", digest)  # pretend it is the published file
    state, info = load_clip_weights()
    assert info["official"] is True and info["found_in"] == "OpenAI CLIP cache"
    assert info["path"] == target and torch.equal(state["proj"], want["proj"])


def test_cmmd_npy_and_plain_state_dicts(tmp_path, monkeypatch):
    state = seeded_random_state_dict(seed=6, layers=2)
    # what scenic writes: np.save of the archive's state dict as numpy arrays
    npy_dict = OrderedDict(
        ("visual." + k, v.half().numpy() if v.ndim >= 2 else v.numpy()) for k, v in state.items()
    )
    npy_dict["input_resolution"] = np.array(336)
    npy_dict["text_projection"] = np.zeros((4, 4), np.float16)
    cache = _isolate(tmp_path, monkeypatch)
    (cache / "scenic" / "clip").mkdir(parents=True)
    npy = cache / "scenic" / "clip" / "vit_l14_336px.npy"
    np.save(npy, npy_dict, allow_pickle=True)
    got, info = load_clip_weights()  # no .pt anywhere: the .npy is found
    assert info["format"] == "cmmd-npy" and info["official"] is None
    assert info["found_in"] == "CMMD scenic cache"
    assert sorted(got) == sorted(state)
    for k, v in state.items():
        expect = v.half().float() if v.ndim >= 2 else v
        assert torch.equal(got[k], expect), k
    for layout in ({"visual." + k: v for k, v in state.items()}, state):
        path = tmp_path / "sd.pth"
        torch.save(layout, path)
        got, info = load_clip_weights(path)
        assert info["format"] == "state-dict" and info["official"] is None
        assert all(torch.equal(got[k], v) for k, v in state.items())


@pytest.mark.slow
def test_extractor_is_strict_and_names_the_file(small_archive):
    path, _ = small_archive
    with pytest.warns(UserWarning), pytest.raises(FidevalError) as err:
        CLIPExtractor(weights=path, device="cpu")  # 2 blocks where 24 are expected
    msg = str(err.value)
    assert str(path) in msg and "transformer.resblocks.2" in msg and "\n" not in msg
    with pytest.raises(FidevalError, match="profile"):
        CLIPExtractor(weights={}, profile="clean")


def test_offline_error_names_archive_url_folders_and_npy(tmp_path, monkeypatch):
    cache = _isolate(tmp_path, monkeypatch)
    with pytest.raises(FidevalError) as err:
        CLIPExtractor()
    msg = str(err.value)
    assert "ViT-L-14-336px.pt" in msg and C.OPENAI_URL in msg
    assert str(cache / "clip") in msg and "vit_l14_336px.npy" in msg
    assert str(cache / "scenic" / "clip") in msg


def test_not_a_weights_file(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"<html>404</html>")
    with pytest.raises(FidevalError) as err:
        load_clip_weights(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
