"""TensorFlow 1's legacy bilinear resize (``tf.image.resize_bilinear``), exactly, in torch.

The FID graph (``classify_image_graph_def.pb``, the ADM evaluator's network) resizes its
input with TF1's ``ResizeBilinear`` (``align_corners=False``, no half-pixel centres).
For an output index j along an axis of input size n and output size m, in float32:

    scale = float32(n) / float32(m)
    s     = float32(j) · scale              (no half-pixel offset: src = dst·n/m)
    lo    = floor(s),  hi = min(lo + 1, n − 1),  t = s − lo

and each output pixel is, with the four neighbours a = x[lo_y, lo_x], b = x[lo_y, hi_x],
c = x[hi_y, lo_x], e = x[hi_y, hi_x] (each step rounded to float32, in this order):

    top = a + (b − a)·t_x,   bottom = c + (e − c)·t_x,   out = top + (bottom − top)·t_y.

No antialiasing: downsampling skips pixels. This is not ``F.interpolate(...,
mode="bilinear", align_corners=False)``, which uses half-pixel centres
(s = (j + ½)·n/m − ½).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import FidevalError

__all__ = ["tf1_resize_bilinear", "tf1_source_grid"]


def tf1_source_grid(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (lo, hi) (int64) and weights t (float32) of one axis, TF1's formula.

    ``lo[j] = floor(j·n/m)``, ``hi[j] = min(lo[j] + 1, n − 1)``, ``t[j] = j·n/m − lo[j]``
    with the products and the scale in float32 (see the module doc).
    """
    if in_size < 1 or out_size < 1:
        raise FidevalError(f"resize sizes must be ≥ 1, got {in_size} → {out_size}")
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.arange(out_size, dtype=np.float32) * scale
    lo = np.floor(src)
    t = (src - lo).astype(np.float32)
    lo_i = lo.astype(np.int64)
    hi_i = np.minimum(lo_i + 1, in_size - 1)
    return lo_i, hi_i, t


def tf1_resize_bilinear(images: torch.Tensor, size: int | tuple[int, int] = 299) -> torch.Tensor:
    """Resize float images (B, C, H, W) to ``size`` with TF1's legacy bilinear rule.

    Values keep their units (the ADM path resizes float32 in [0, 255]). Computed in the
    input's float dtype on its device; an input already of the target size is returned
    unchanged (TF1 returns it as is too).
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise FidevalError(f"tf1_resize_bilinear expects a tensor (B, C, H, W), got {shape}")
    if not images.dtype.is_floating_point:
        raise FidevalError(
            f"tf1_resize_bilinear expects float images, got {images.dtype}; "
            "convert uint8 with .to(torch.float32) first (values stay in [0, 255])"
        )
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    in_h, in_w = int(images.shape[2]), int(images.shape[3])
    if (in_h, in_w) == (out_h, out_w):
        return images
    dev, dt = images.device, images.dtype
    ylo, yhi, ty = (torch.from_numpy(a).to(dev) for a in tf1_source_grid(in_h, out_h))
    xlo, xhi, tx = (torch.from_numpy(a).to(dev) for a in tf1_source_grid(in_w, out_w))
    ty, tx = ty.to(dt), tx.to(dt)
    # Interpolate along x once per *source* row (the same float ops TF does per pixel:
    # a + (b − a)·t_x), then along y between the rows each output row needs.
    left = images.index_select(3, xlo)
    right = images.index_select(3, xhi)
    rows = torch.sub(right, left).mul_(tx).add_(left)  # (B, C, H_in, out_w)
    del left, right
    top = rows.index_select(2, ylo)
    bottom = rows.index_select(2, yhi)
    return bottom.sub_(top).mul_(ty[:, None]).add_(top)
