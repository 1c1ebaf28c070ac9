"""CLIP ViT-L/14 @ 336 px image embeddings for CMMD (``clip-vitl14-336``).

CMMD (Jayasumana et al. 2024, google-research ``cmmd/``) measures the MMD
between CLIP image embeddings. The network is OpenAI's CLIP ViT-L/14@336px
image tower, written here with OpenAI's parameter names (the ``visual.*`` keys
of its state dict)::

    x = conv1(img)                         Conv2d(3→1024, kernel = stride = 14, no bias): 24×24
    x = [class_embedding; x] + P           P: positional_embedding (577, 1024), no resize
    x = ln_pre(x)
    for each of 24 blocks:                 LayerNorm eps 1e-5; 16 heads
        x = x + Attn(ln_1(x))              attn.in_proj_weight (3072, 1024) rows [q; k; v],
                                           in_proj_bias, attn.out_proj
        x = x + MLP(ln_2(x))               mlp.c_fc 1024→4096, QuickGELU, mlp.c_proj
    f = ln_post(x[:, 0]) @ proj            proj (1024, 768), no bias
    feature = f / ‖f‖₂                     768-d, L2-normalized, float32

QuickGELU is ``x·σ(1.702x)``, the activation CLIP was trained with; the exact
(erf) GELU of open_clip's plain ``ViT-L-14-336`` config moves the embeddings by
≈1 % and is not the protocol. Computation is float32, on CUDA with cuDNN's TF32
convolutions off (:func:`fideval.features._vit.full_float32`) (OpenAI's ``clip.load``
runs fp16 on a GPU; the original CMMD converts the weights to float32 numpy
and so does this module).

Preprocessing (profile ``cmmd``, the original CMMD's ``io_util``): each image
is cropped to its centred square of side l = min(w, h), box
(left, top) = ((w − l) // 2, (h − l) // 2), resized to 336×336 with PIL's bicubic
filter on the 8-bit RGB image (antialiased when shrinking, rounded to uint8),
then /255 and (x − mean)/std with CLIP's mean (0.48145466, 0.4578275,
0.40821073) and std (0.26862954, 0.26130258, 0.27577711). Float images in
[0, 1] are first rounded to uint8 (``floor(255x + 0.5)``).

Weights, in the order they are looked for (each in fideval's folders and
torch hub's, then the folder named):

1. ``ViT-L-14-336px.pt`` — OpenAI's TorchScript archive, also in ``~/.cache/clip``
   (``clip.load``). Its tensors are read from the zip without compiling or
   running its code (:func:`fideval.io.weights.read_torchscript_tensors`), and the
   file is verified by its published SHA-256 ``3035c92b…``;
2. ``vit_l14_336px.npy`` — the original CMMD's conversion (scenic's
   ``np.save`` of the archive's state dict), also in ``~/.cache/scenic/clip``; read
   with a numpy-only unpickler; no published hash, so its own is recorded;
3. otherwise the archive is downloaded (hash-checked, atomic) when online.

An explicit ``weights=`` may also be a plain state dict file (``torch.save``,
``visual.*`` keys or bare ones) or a dict in memory. ``weights_sha256`` is the
SHA-256 of the file (of the dict's tensors for a dict,
:func:`fideval.io.weights.state_dict_sha256`): statistics made from the archive
and from its ``.npy`` conversion hold the same tensors but carry different
hashes, so comparing them needs ``force``.
"""

from __future__ import annotations

import warnings
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
    "CLIP_EXTRACTOR_ID",
    "CLIPExtractor",
    "CLIPVisionTower",
    "load_clip_weights",
    "preprocess_clip",
    "seeded_random_state_dict",
]

CLIP_EXTRACTOR_ID = "clip-vitl14-336"
CLIP_PROFILE = "cmmd"
IMAGE_SIZE = 336
PATCH_SIZE = 14
WIDTH = 1024
LAYERS = 24
HEADS = 16
EMBED_DIM = 768
LAYER_NORM_EPS = 1e-5
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
OPENAI_NAME = "ViT-L-14-336px.pt"
OPENAI_SHA256 = "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"
OPENAI_URL = f"https://openaipublic.azureedge.net/clip/models/{OPENAI_SHA256}/{OPENAI_NAME}"
SCENIC_NAME = "vit_l14_336px.npy"


# --------------------------------------------------------------------------- network


class QuickGELU(nn.Module):
    """x·σ(1.702x) (CLIP's activation, not the exact GELU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttention(nn.Module):
    """Self-attention with ``nn.MultiheadAttention``'s parameter names, batch-first."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self_attention(
            x,
            self.in_proj_weight,
            self.in_proj_bias,
            self.out_proj.weight,
            self.out_proj.bias,
            self.heads,
        )


class MLP(nn.Module):
    """c_fc (C→4C) → QuickGELU → c_proj (4C→C)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """x + Attn(ln_1 x), then x + MLP(ln_2 x); LayerNorm eps 1e-5."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.attn = ResidualAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.mlp = MLP(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.resblocks:
            x = blk(x)
        return x


class CLIPVisionTower(nn.Module):
    """CLIP's ViT image tower (OpenAI ``VisionTransformer``); ``forward`` gives the projection.

    Input: normalized images (B, 3, image_size, image_size). Output: (B, output_dim),
    *not* normalized (the extractor divides by the L2 norm). Tokens are kept
    batch-first (OpenAI permutes to sequence-first for ``nn.MultiheadAttention``;
    the arithmetic is the same).
    """

    def __init__(
        self,
        layers: int = LAYERS,
        width: int = WIDTH,
        heads: int = HEADS,
        image_size: int = IMAGE_SIZE,
        patch_size: int = PATCH_SIZE,
        output_dim: int = EMBED_DIM,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        grid = image_size // patch_size
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.proj = nn.Parameter(torch.empty(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise FidevalError(
                f"CLIP input must be {self.image_size}×{self.image_size}, got {tuple(x.shape[-2:])}"
            )
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (B, grid², width), row-major
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat((cls, x), dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


def seeded_random_state_dict(
    seed: int = 0, *, layers: int = LAYERS, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Random weights with the keys and shapes of OpenAI's visual tower (tests, benchmarks).

    Weights N(0, 1/fan_in) (``proj``: fan-in its first axis), biases N(0, 0.02²),
    LayerNorm weights 1 + N(0, 0.1²), class/positional embeddings N(0, 0.1²).
    Keys get ``prefix`` (``"visual."`` for the layout of the OpenAI state dict).
    """
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in CLIPVisionTower(layers=layers).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key in sorted(shapes):
        shape = shapes[key]
        leaf = key.rsplit(".", 2)
        if key.endswith(".weight") and leaf[-2].startswith("ln"):
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif key == "proj":
            v = torch.randn(shape, generator=g) / shape[0] ** 0.5
        elif key.endswith("weight"):
            v = torch.randn(shape, generator=g) / float(np.prod(shape[1:])) ** 0.5
        elif key.endswith("bias"):
            v = 0.02 * torch.randn(shape, generator=g)
        else:  # class_embedding, positional_embedding
            v = 0.1 * torch.randn(shape, generator=g)
        state[prefix + key] = v.contiguous()
    return state


# --------------------------------------------------------------------------- preprocessing


def preprocess_clip(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Images → CMMD's network input, float32 (B, 3, 336, 336) on the images' device.

    Centre square crop, PIL bicubic to 336 (uint8), /255, CLIP mean/std.
    """
    u8 = as_uint8_rgb(images, "CLIP extractor")
    x = pil_bicubic_batch(u8, IMAGE_SIZE, center_crop=True).to(torch.float32)
    return normalize(x / 255.0, CLIP_MEAN, CLIP_STD)


# --------------------------------------------------------------------------- weights


def _to_visual_state(raw: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """``visual.*`` entries (prefix stripped) or, if there are none, all entries; float32."""
    keys = [k for k in raw if isinstance(k, str) and k.startswith("visual.")]
    picked = {k[len("visual.") :]: raw[k] for k in keys} if keys else dict(raw)
    state: dict[str, torch.Tensor] = {}
    for key, value in picked.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.array(value))  # a writable copy
        if not isinstance(value, torch.Tensor):
            raise FidevalError(
                f"{source}: entry {key!r} is a {type(value).__name__}, expected a tensor/array"
            )
        state[str(key)] = value.to(torch.float32) if value.is_floating_point() else value
    return state


def _read_weights_file(path: Path) -> tuple[dict[str, Any], str]:
    from ..io.edm2_pickle import safe_load_npy_object
    from ..io.weights import is_torchscript_archive, load_state_dict, read_torchscript_tensors

    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        obj = safe_load_npy_object(path)
        if not isinstance(obj, Mapping):
            raise FidevalError(f"{path}: the .npy holds a {type(obj).__name__}, not a dict")
        return dict(obj), "cmmd-npy"
    if is_torchscript_archive(path):
        return read_torchscript_tensors(path), "openai-torchscript"
    return load_state_dict(path), "state-dict"


def load_clip_weights(
    weights: str | Path | Mapping[str, Any] | None = None, *, download: bool | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The visual tower's state dict (bare keys, float32) and where it came from.

    ``weights``: a path (TorchScript archive, CMMD ``.npy`` or plain state dict), a
    dict, or ``None`` to look the files up (module doc). The info dict has
    ``sha256``, ``path`` (or ``None``), ``format`` (``"openai-torchscript"``,
    ``"cmmd-npy"``, ``"state-dict"``) and ``official`` (``True``/``False`` for the
    archive, ``None`` where no hash is published).
    """
    from ..io.weights import (
        clip_cache_dir,
        find_weights,
        resolve_weights,
        scenic_clip_cache_dir,
        sha256_file,
        state_dict_sha256,
    )

    if isinstance(weights, Mapping):
        state = _to_visual_state(weights, "state dict given")
        return state, {
            "sha256": state_dict_sha256(state),
            "path": None,
            "format": "state-dict",
            "official": None,
        }
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FidevalError(f"weights file {path} does not exist (given explicitly)")
        digest = sha256_file(path)
        raw, fmt = _read_weights_file(path)
        official = (digest == OPENAI_SHA256) if fmt == "openai-torchscript" else None
        if official is False:
            warnings.warn(
                f"weights file {path} is a TorchScript archive with SHA-256 {digest}, not "
                f"OpenAI's {OPENAI_NAME} ({OPENAI_SHA256[:8]}...): CMMD values made with it "
                "are not comparable with published ones",
                UserWarning,
                stacklevel=3,
            )
        where = "explicit"
    else:
        clip_dirs = [("OpenAI CLIP cache", clip_cache_dir())]
        scenic_dirs = [("CMMD scenic cache", scenic_clip_cache_dir())]
        wf = find_weights(OPENAI_NAME, sha256_prefix=OPENAI_SHA256, extra_dirs=clip_dirs)
        if wf is None:
            wf = find_weights(SCENIC_NAME, sha256_prefix=None, extra_dirs=scenic_dirs)
        if wf is None:
            try:
                wf = resolve_weights(
                    None,
                    name=OPENAI_NAME,
                    url=OPENAI_URL,
                    sha256_prefix=OPENAI_SHA256,
                    download=download,
                    extra_dirs=clip_dirs,
                    purpose="CMMD",
                )
            except FidevalError as exc:
                raise FidevalError(
                    f"{exc}; the original CMMD's {SCENIC_NAME} is also accepted, in "
                    f"{scenic_clip_cache_dir()} or any of those folders"
                ) from None
        path, digest, where = wf.path, wf.sha256, wf.found_in
        raw, fmt = _read_weights_file(path)
        official = wf.official if fmt == "openai-torchscript" else None
    state = _to_visual_state(raw, str(path))
    info = {"sha256": digest, "path": path, "format": fmt, "official": official, "found_in": where}
    return state, info


# --------------------------------------------------------------------------- extractor


class CLIPExtractor(FrozenModule):
    """Frozen CLIP ViT-L/14@336 embeddings: images (B, C, H, W) → float32 (B, 768), unit norm.

    Parameters
    ----------
    weights: path (OpenAI archive, CMMD ``.npy``, plain state dict), a state dict,
        or ``None`` to look the files up (module doc) and download when online.
    device: torch device; ``None`` picks CUDA when available, else the CPU.
    profile: ``"cmmd"`` (the only one).
    download: allow downloading the archive when no file is found.

    Always in eval mode, float32, under ``torch.inference_mode()``. Attributes:
    ``id`` (``"clip-vitl14-336"``), ``dims`` (768), ``profile``, ``image_size``
    (336), ``weights_sha256``, ``weights_path``, ``weights_format``.
    """

    id: str = CLIP_EXTRACTOR_ID
    dims: int = EMBED_DIM
    image_size: int = IMAGE_SIZE

    def __init__(
        self,
        *,
        weights: str | Path | Mapping[str, Any] | None = None,
        device: str | torch.device | None = None,
        profile: str = CLIP_PROFILE,
        download: bool | None = None,
    ) -> None:
        super().__init__()
        if profile != CLIP_PROFILE:
            raise FidevalError(
                f"unknown CLIP preprocessing profile {profile!r}; expected {CLIP_PROFILE!r}"
            )
        self.profile: str = profile
        state, info = load_clip_weights(weights, download=download)
        self.weights_sha256: str = info["sha256"]
        self.weights_path: Path | None = info["path"]
        self.weights_format: str = info["format"]
        self.weights_official: bool | None = info["official"]
        where = f"file {self.weights_path}" if self.weights_path else "(state dict given)"
        with torch.device("meta"):  # no default initialization: the weights come next
            net = CLIPVisionTower()
        try:
            net.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())
            detail = detail if len(detail) <= 400 else detail[:399] + "…"
            raise FidevalError(
                f"weights {where} do not fit {self.id} (OpenAI ViT-L/14@336px visual tower, "
                f"keys visual.* or bare): {detail}"
            ) from exc
        net.requires_grad_(False)
        self.net = net.to(resolve_device(device))
        super().train(False)

    def preprocess(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The network input (B, 3, 336, 336) of the ``cmmd`` profile on this device."""
        return preprocess_clip(images).to(self.device)

    @property
    def worker_preprocess(self) -> NamedPreprocess:
        """The ``cmmd`` profile as a picklable callable, for DataLoader workers."""
        return NamedPreprocess(self.profile, preprocess_clip)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalized embeddings (B, 768) of preprocessed input (B, 3, 336, 336)."""
        with torch.inference_mode(), full_float32(self.device):
            return F.normalize(self.run_net(x.to(self.device)).float(), dim=-1)

    def forward(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """L2-normalized embeddings (B, 768) float32 of uint8 / [0, 1] images of any size."""
        return self.features(self.preprocess(images))

    def provenance(self) -> dict[str, Any]:
        """What identifies this feature space in a statistics file's ``meta``."""
        meta = {**self.base_provenance(), "weights_format": self.weights_format}
        if self.weights_path is not None:
            meta["weights_file"] = self.weights_path.name
        if self.weights_official is not None:
            meta["weights_official"] = self.weights_official
        return meta

    def extra_repr(self) -> str:
        return f"id={self.id!r}, format={self.weights_format!r}, sha256={self.weights_sha256[:12]}…"
