"""Pieces shared by the ViT extractors (DINOv2, CLIP): input handling, resizing, attention.

Input contract of every extractor: a tensor (B, C, H, W) — uint8 in [0, 255] or
float in [0, 1] — or a numpy batch (B, H, W, C); C = 1 (grey, repeated to RGB),
3 (RGB) or 4 (RGBA, alpha dropped). Every protocol these extractors reproduce
starts from 8-bit images (PNG/JPEG files, or EDM2's uint8 generator output),
so float images are first quantized as a saved PNG would be,
``floor(255 x + 0.5)`` (:func:`fideval.features.preprocess.quantize_uint8`):
a float image and its PNG give the same features.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import FidevalError
from .preprocess import quantize_uint8, to_nchw


def as_uint8_rgb(images: torch.Tensor | np.ndarray, who: str) -> torch.Tensor:
    """A batch as uint8 (B, 3, H, W) on its own device: grey→RGB, alpha dropped, floats rounded.

    Tensors are read channels-first (B, C, H, W), numpy arrays channels-last
    (B, H, W, C) unless the channel count says otherwise; (B, H, W) is grey.
    """
    if isinstance(images, torch.Tensor):
        x = images.detach()
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.ndim != 4:
            raise FidevalError(
                f"{who}: expected images (B, C, H, W), got shape {tuple(images.shape)}"
            )
        x = to_nchw(x, channels_last=False)
    elif isinstance(images, np.ndarray):
        x = to_nchw(images)
    else:
        raise FidevalError(
            f"{who}: expected a tensor (B, C, H, W) or an array (B, H, W, C), "
            f"got {type(images).__name__}"
        )
    if x.dtype == torch.bool or x.is_complex():
        raise FidevalError(f"{who}: images must be uint8 or float in [0, 1], got {x.dtype}")
    if x.shape[-1] < 1 or x.shape[-2] < 1:
        raise FidevalError(f"{who}: empty images of shape {tuple(x.shape)}")
    return quantize_uint8(x).contiguous()


def pil_bicubic_batch(
    images: torch.Tensor, size: int, *, center_crop: bool = False
) -> torch.Tensor:
    """PIL bicubic resize of each uint8 RGB image to ``size``×``size``, uint8 (B, 3, size, size).

    ``PIL.Image.resize(..., BICUBIC)`` on the 8-bit RGB image (PIL's filter is
    antialiased when shrinking, a = −0.5) and rounded to uint8 by PIL. With
    ``center_crop`` the image is first cropped to its centred square of side
    l = min(w, h), box (left, top) = ((w − l) // 2, (h − l) // 2), as
    ``Image.crop`` then ``resize`` (the original CMMD's order).
    """
    arr = images.permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty((arr.shape[0], size, size, 3), dtype=np.uint8)
    for i, hwc in enumerate(arr):
        im = Image.fromarray(np.ascontiguousarray(hwc), mode="RGB")
        if center_crop:
            w, h = im.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side))
        out[i] = np.asarray(im.resize((size, size), resample=Image.Resampling.BICUBIC))
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(images.device)


def normalize(x01: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x − mean) / std`` per channel, float32 (x in [0, 1], (B, 3, H, W))."""
    m = torch.tensor(mean, dtype=torch.float32, device=x01.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x01.device).view(1, -1, 1, 1)
    return (x01.to(torch.float32) - m) / s


def self_attention(
    x: torch.Tensor,
    qkv_weight: torch.Tensor,
    qkv_bias: torch.Tensor | None,
    out_weight: torch.Tensor,
    out_bias: torch.Tensor | None,
    num_heads: int,
) -> torch.Tensor:
    """Multi-head self-attention of x (B, N, C) with a fused [q; k; v] projection.

    qkv = x Wᵀ + b, rows of W being [W_q; W_k; W_v] (3C, C); per head h of
    width D = C / heads: softmax(q_h k_hᵀ / √D) v_h (``F.scaled_dot_product_attention``);
    heads concatenated, then the output projection. The same arithmetic as the
    hub's DINOv2 ``Attention``, timm's ``Attention`` and ``nn.MultiheadAttention``
    (whose ``in_proj_weight`` is also [W_q; W_k; W_v]).
    """
    b, n, c = x.shape
    d = c // num_heads
    qkv = F.linear(x, qkv_weight, qkv_bias).reshape(b, n, 3, num_heads, d).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    y = F.scaled_dot_product_attention(q, k, v)
    return F.linear(y.transpose(1, 2).reshape(b, n, c), out_weight, out_bias)


@contextmanager
def full_float32(device: torch.device) -> Iterator[None]:
    """On CUDA, switch off cuDNN's TF32 convolutions (PyTorch's default is on) for the block.

    The reference implementations are compared in float32; a TF32 patch
    embedding (10-bit mantissa) would move features by ~1e-3 relative. Matmuls
    follow ``torch.get_float32_matmul_precision()`` (default ``"highest"``: full
    float32), which is left to the user. No effect on the CPU.
    """
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = previous
