"""DINOv2 ViT-L/14 and ViT-B/14 feature extractors (FD_DINOv2 of EDM2 and dgm-eval).

The network is written here (no ``torch.hub``, no code download, no xFormers)
and takes the hub's plain checkpoints as they are:

========================  =====  ======  =====  =====================================
extractor id              depth  width   heads  weights file (``state_dict``)
========================  =====  ======  =====  =====================================
``dinov2-vitl14``         24     1024    16     ``dinov2_vitl14_pretrain.pth`` (≈1.2 GB)
``dinov2-vitb14``         12     768     12     ``dinov2_vitb14_pretrain.pth`` (≈0.35 GB)
========================  =====  ======  =====  =====================================

Architecture (the hub's ``vit_large`` / ``vit_base`` with ``patch_size=14``,
``img_size=518``, ``init_values=1.0``, ``ffn_layer="mlp"``, no register
tokens)::

    x = patch_embed(img)                      Conv2d(3→C, kernel = stride = 14, bias): (B, N, C)
    x = [cls_token; x] + P                    P: position embedding resized to the grid
    for each block:                           LayerNorm eps 1e-6, exact (erf) GELU
        x = x + γ₁ ⊙ Attn(LN₁(x))             qkv and proj with biases, qkv rows [q; k; v]
        x = x + γ₂ ⊙ MLP(LN₂(x))              MLP: C → 4C → C, with biases
    feature = LN(x)[:, 0]                     CLS token after the final norm, float32

``mask_token`` (1, C) is in the checkpoint and loaded (strictly) but unused:
it only replaces masked patches during DINOv2 training.

Position embedding. The checkpoint's P has 1 + 37×37 rows (518 px). For a
grid of h₀×w₀ patches the hub resizes the 37×37 part by bicubic interpolation
(a = −0.75, ``align_corners=False``, no antialias) with
``scale_factor = ((h₀ + 0.1)/37, (w₀ + 0.1)/37)`` — not ``size=(h₀, w₀)`` — and
keeps the CLS row; the output has ⌊37·(h₀ + 0.1)/37⌋ = h₀ rows, but the source
coordinate of output row i is (i + ½)·37/(h₀ + 0.1) − ½, so the offset shifts
every sample. Resizing with ``size=`` instead changes the resized embedding by
≈6 % (smooth grid) to 30 % (noise) in relative L2 norm. At
224 px (16×16) this is :func:`resize_pos_embed`, recomputed from P at each call
as the hub does (it is a 1024×37×37 interpolation, negligible beside the
network). Where the grid is the checkpoint's own (518 px), P is used unchanged.

Preprocessing profiles (named in provenance; statistics of different profiles
are never compared):

``edm2`` (default; EDM2's ``resize_mode='torch'``)
    uint8 → float32 in [0, 255] → ``F.interpolate(size=(224, 224), mode='bicubic',
    antialias=True)`` with no rounding and no clamping → /255 → (x − mean)/std with
    the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
``dgm-eval`` (alias ``pil``; dgm-eval's default and EDM2's ``resize_mode='pil'``)
    PIL bicubic resize of the uint8 RGB image to 224×224, rounded to uint8 by PIL,
    then /255 and the same normalization.

No centre crop in either: non-square images are squeezed to 224×224. Float
images in [0, 1] are first rounded to uint8 (``floor(255x + 0.5)``), since both
protocols start from 8-bit images.

Weights are looked up by :func:`fideval.io.weights.resolve_weights` in
fideval's folders, torch hub's ``checkpoints/`` (dgm-eval) and EDM2's
``~/.cache/dnnlib/torch_hub/checkpoints/``. Meta publishes no SHA-256 for these
files, so nothing is verified; the file's full SHA-256 is recorded as
``weights_sha256`` (a state dict given in memory is identified by
:func:`fideval.io.weights.state_dict_sha256`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FidevalError
from ._vit import as_uint8_rgb, full_float32, normalize, pil_bicubic_batch, self_attention
from .base import FrozenModule, NamedPreprocess, resolve_device

__all__ = [
    "DINOV2_ARCHS",
    "DINOV2_PROFILES",
    "DINOv2Extractor",
    "DINOv2ViT",
    "dinov2_weights_name",
    "preprocess_dinov2",
    "resize_pos_embed",
    "seeded_random_state_dict",
]

PATCH_SIZE = 14
PRETRAIN_GRID = 37  # 518 px / 14
IMAGE_SIZE = 224
INTERPOLATE_OFFSET = 0.1
LAYER_NORM_EPS = 1e-6
MLP_RATIO = 4
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_BASE_URL = "https://dl.fbaipublicfiles.com/dinov2"

#: arch -> (depth, width, heads)
DINOV2_ARCHS: dict[str, tuple[int, int, int]] = {
    "vitl14": (24, 1024, 16),
    "vitb14": (12, 768, 12),
}
DINOV2_PROFILES = ("edm2", "dgm-eval")
_PROFILE_ALIASES = {"edm2": "edm2", "dgm-eval": "dgm-eval", "pil": "dgm-eval"}


def dinov2_weights_name(arch: str) -> str:
    """The hub's checkpoint file name, e.g. ``dinov2_vitl14_pretrain.pth``."""
    return f"dinov2_{arch}_pretrain.pth"


# --------------------------------------------------------------------------- network


class LayerScale(nn.Module):
    """x ⊙ γ, γ (C,) (the checkpoint's ``ls1.gamma`` / ``ls2.gamma``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.empty(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc1 (C→4C) → exact GELU → fc2 (4C→C)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    """Self-attention with fused ``qkv`` (3C×C, rows [q; k; v]) and ``proj``, both biased."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self_attention(
            x, self.qkv.weight, self.qkv.bias, self.proj.weight, self.proj.bias, self.num_heads
        )


class Block(nn.Module):
    """x + γ₁ ⊙ Attn(LN₁ x), then x + γ₂ ⊙ MLP(LN₂ x) (pre-norm, LayerScale)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, MLP_RATIO * dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Conv2d(3→C, 14, stride 14) then flatten to tokens (B, h₀·w₀, C), row-major."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def resize_pos_embed(
    pos_embed: torch.Tensor, grid_h: int, grid_w: int, *, offset: float = INTERPOLATE_OFFSET
) -> torch.Tensor:
    """The hub's position-embedding resize: (1, 1 + M², C) → (1, 1 + grid_h·grid_w, C).

    The M×M patch part is resized by ``F.interpolate(mode='bicubic',
    align_corners=False, antialias=False, scale_factor=((grid_h + offset)/M,
    (grid_w + offset)/M))`` in float32; the CLS row is kept. Returned unchanged
    when the grid is square and already M×M (as the hub does).
    """
    n = pos_embed.shape[1] - 1
    m = math.isqrt(n)
    if m * m != n:
        raise FidevalError(f"pos_embed has {n} patch rows, not a square grid")
    if grid_h == grid_w == m:
        return pos_embed
    dim = pos_embed.shape[-1]
    pe = pos_embed.float()
    grid = pe[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid,
        scale_factor=((grid_h + offset) / m, (grid_w + offset) / m),
        mode="bicubic",
        align_corners=False,
        antialias=False,
    )
    if tuple(grid.shape[-2:]) != (grid_h, grid_w):  # pragma: no cover - offset < 1 guarantees it
        raise FidevalError(f"pos_embed resize gave {tuple(grid.shape[-2:])}, not {grid_h, grid_w}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
    return torch.cat((pe[:, :1], grid), dim=1).to(pos_embed.dtype)


class DINOv2ViT(nn.Module):
    """The DINOv2 backbone with the hub's parameter names; ``forward`` gives CLS features.

    Input: normalized images (B, 3, H, W), H and W multiples of 14. Output:
    (B, width) — the CLS token after the final LayerNorm.
    """

    def __init__(
        self, depth: int, dim: int, num_heads: int, pretrain_grid: int = PRETRAIN_GRID
    ) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.empty(1, 1 + pretrain_grid**2, dim))
        self.mask_token = nn.Parameter(torch.empty(1, dim))  # loaded, unused at inference
        self.patch_embed = PatchEmbed(dim)
        self.blocks = nn.ModuleList(Block(dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        if h % PATCH_SIZE or w % PATCH_SIZE:
            raise FidevalError(f"DINOv2 input {h}×{w} is not a multiple of {PATCH_SIZE}")
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(b, -1, -1), tokens), dim=1)
        tokens = tokens + resize_pos_embed(self.pos_embed, h // PATCH_SIZE, w // PATCH_SIZE)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)[:, 0]


def seeded_random_state_dict(
    arch: str = "vitl14", seed: int = 0, *, depth: int | None = None
) -> dict[str, torch.Tensor]:
    """Random weights with the hub checkpoint's keys and shapes (for tests, benchmarks).

    Scales keep activations O(1) through all blocks: linear and conv weights
    N(0, 1/fan_in), biases N(0, 0.02²), LayerNorm weights 1 + N(0, 0.1²), LayerScale
    γ ~ U(0.1, 0.3), tokens and position embedding N(0, 0.1²) (noise-like, where
    the resize rule matters most). Deterministic in ``seed``; ``depth`` overrides
    the number of blocks.
    """
    d_full, dim, heads = _arch(arch)
    depth = d_full if depth is None else depth
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in DINOv2ViT(depth, dim, heads).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key in sorted(shapes):
        shape = shapes[key]
        if key.endswith(".gamma"):
            v = 0.1 + 0.2 * torch.rand(shape, generator=g)
        elif key.endswith(".weight") and key.rsplit(".", 2)[-2].startswith("norm"):
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("weight"):
            fan_in = int(np.prod(shape[1:]))
            v = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        elif key.endswith("bias"):
            v = 0.02 * torch.randn(shape, generator=g)
        else:  # cls_token, pos_embed, mask_token
            v = 0.1 * torch.randn(shape, generator=g)
        state[key] = v.contiguous()
    return state


def _arch(arch: str) -> tuple[int, int, int]:
    try:
        return DINOV2_ARCHS[arch]
    except KeyError:
        raise FidevalError(
            f"unknown DINOv2 architecture {arch!r}; expected one of {sorted(DINOV2_ARCHS)}"
        ) from None


# --------------------------------------------------------------------------- preprocessing


def _profile(profile: str) -> str:
    try:
        return _PROFILE_ALIASES[profile]
    except KeyError:
        raise FidevalError(
            f"unknown DINOv2 preprocessing profile {profile!r}; expected 'edm2' (default) or "
            "'dgm-eval' (alias 'pil')"
        ) from None


def preprocess_dinov2(images: torch.Tensor | np.ndarray, profile: str = "edm2") -> torch.Tensor:
    """Images (see :mod:`fideval.features._vit`) → normalized float32 (B, 3, 224, 224).

    ``edm2``: antialiased bicubic ``F.interpolate`` of the unrounded floats in
    [0, 255]; ``dgm-eval``/``pil``: PIL bicubic on uint8, rounded. Both then /255
    and ImageNet mean/std. Runs on the images' device (PIL on the CPU).
    """
    name = _profile(profile)
    u8 = as_uint8_rgb(images, "DINOv2 extractor")
    if name == "edm2":
        x = F.interpolate(
            u8.to(torch.float32),
            size=(IMAGE_SIZE, IMAGE_SIZE),
            mode="bicubic",
            align_corners=False,
            antialias=True,
        )
    else:
        x = pil_bicubic_batch(u8, IMAGE_SIZE).to(torch.float32)
    return normalize(x / 255.0, IMAGENET_MEAN, IMAGENET_STD)


# --------------------------------------------------------------------------- extractor


def _fit_error(where: str, ident: str, exc: RuntimeError | str) -> FidevalError:
    detail = " ".join(str(exc).split())
    if len(detail) > 400:
        detail = detail[:399] + "…"
    return FidevalError(f"weights {where} do not fit {ident}: {detail}")


class DINOv2Extractor(FrozenModule):
    """Frozen DINOv2 CLS features: images (B, C, H, W) → float32 (B, 1024) or (B, 768).

    Parameters
    ----------
    arch: ``"vitl14"`` (id ``dinov2-vitl14``, the FD_DINOv2 of EDM2) or ``"vitb14"``
        (id ``dinov2-vitb14``).
    weights: path of the hub checkpoint, or its state dict; ``None`` looks the file
        up (see the module doc) and downloads it when online.
    device: torch device; ``None`` picks CUDA when available, else the CPU.
    profile: ``"edm2"`` (default) or ``"dgm-eval"`` (alias ``"pil"``).
    download: allow downloading when the file is not found (default: unless
        ``FIDEVAL_OFFLINE`` is set).

    The module stays in eval mode and runs under ``torch.inference_mode()`` in
    float32 (on CUDA with cuDNN's TF32 convolutions off for the patch embedding).
    Attributes: ``id``, ``dims``, ``profile``, ``image_size`` (224),
    ``weights_sha256``, ``weights_path`` (``None`` for a dict).
    """

    image_size: int = IMAGE_SIZE
    weights_sha256: str

    def __init__(
        self,
        arch: str = "vitl14",
        *,
        weights: str | Path | Mapping[str, torch.Tensor] | None = None,
        device: str | torch.device | None = None,
        profile: str = "edm2",
        download: bool | None = None,
    ) -> None:
        super().__init__()
        depth, dim, heads = _arch(arch)
        self.arch = arch
        self.id: str = f"dinov2-{arch}"
        self.dims: int = dim
        self.profile: str = _profile(profile)
        self.weights_path: Path | None = None
        self.weights_official: bool | None = None
        state, where = self._load_weights(weights, download)
        with torch.device("meta"):  # no default initialization: the weights come next
            net = DINOv2ViT(depth, dim, heads)
        state = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()}
        if "mask_token" not in state:  # unused; some re-saved dicts (timm's) drop it
            state["mask_token"] = torch.zeros(1, dim)
        if state.get("cls_token") is not None and state["cls_token"].shape[-1] != dim:
            other = {v[1]: a for a, v in DINOV2_ARCHS.items()}.get(state["cls_token"].shape[-1])
            hint = f" (width {state['cls_token'].shape[-1]}: dinov2-{other}?)" if other else ""
            raise _fit_error(where, self.id, f"width {dim} expected{hint}")
        try:
            net.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as exc:
            raise _fit_error(where, self.id, exc) from exc
        net.requires_grad_(False)
        self.net = net.to(resolve_device(device))
        super().train(False)

    def _load_weights(
        self, weights: str | Path | Mapping[str, torch.Tensor] | None, download: bool | None
    ) -> tuple[dict[str, torch.Tensor], str]:
        from ..io.weights import (
            dnnlib_checkpoint_dir,
            load_state_dict,
            resolve_weights,
            state_dict_sha256,
        )

        if isinstance(weights, Mapping):
            state = dict(weights)
            self.weights_sha256 = state_dict_sha256(state)
            return state, "(state dict given)"
        name = dinov2_weights_name(self.arch)
        wf = resolve_weights(
            weights,
            name=name,
            url=f"{WEIGHTS_BASE_URL}/dinov2_{self.arch}/{name}",
            sha256_prefix=None,  # Meta publishes none: the file's own hash is recorded
            download=download,
            extra_dirs=[("EDM2 dnnlib torch hub", dnnlib_checkpoint_dir())],
            purpose="FD_DINOv2",
        )
        self.weights_path = wf.path
        self.weights_sha256 = wf.sha256
        self.weights_official = wf.official
        return load_state_dict(wf.path), f"file {wf.path}"

    def preprocess(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The network input of this extractor's profile, (B, 3, 224, 224) on its device."""
        if isinstance(images, torch.Tensor) and self.profile == "edm2":
            images = images.to(self.device)  # resize on the device (PIL runs on the CPU)
        return preprocess_dinov2(images, self.profile).to(self.device)

    @property
    def worker_preprocess(self) -> NamedPreprocess:
        """The profile as a picklable callable, for DataLoader workers (the fast path)."""
        return NamedPreprocess(self.profile, preprocess_dinov2, profile=self.profile)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """CLS features (B, dims) float32 of preprocessed input (B, 3, 224, 224)."""
        with torch.inference_mode(), full_float32(self.device):
            return self.run_net(x.to(self.device)).float()

    def forward(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """CLS features (B, dims) float32 of uint8 or [0, 1] float images of any size."""
        return self.features(self.preprocess(images))

    def provenance(self) -> dict[str, Any]:
        """What identifies this feature space in a statistics file's ``meta``."""
        meta = self.base_provenance()
        if self.weights_path is not None:
            meta["weights_file"] = self.weights_path.name
        return meta

    def extra_repr(self) -> str:
        return (
            f"id={self.id!r}, profile={self.profile!r}, dims={self.dims}, "
            f"sha256={self.weights_sha256[:12]}…"
        )
