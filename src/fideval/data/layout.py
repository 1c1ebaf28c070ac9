"""Image batch layout and value range: the one place images are converted.

Numpy batches are (N, H, W, C) and tensors (N, C, H, W) unless the channel count says
otherwise; (N, H, W) is grayscale. Grayscale is repeated to 3 channels and alpha is
dropped (as PIL's ``convert("RGB")`` does). Floats must lie in [0, 1]; where uint8 is
needed they are quantized by rounding, ``floor(255 x + 0.5)``, never truncated (so a
float image and its saved PNG agree).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import FidevalError

_FLOAT_TOL = 1e-6


def to_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "uif":
        raise FidevalError(f"images must be numeric arrays, got dtype {arr.dtype}")
    if arr.dtype == np.uint16 or arr.dtype == np.uint32 or arr.dtype == np.uint64:
        arr = arr.astype(np.int64)
    arr = np.ascontiguousarray(arr)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def to_nchw(
    images: np.ndarray | torch.Tensor, *, channels_last: bool | None = None, rgb: bool = True
) -> torch.Tensor:
    """A batch as a tensor (N, 3, H, W): gray repeated to RGB, alpha dropped.

    Numpy arrays are read as (N, H, W, C) and tensors as (N, C, H, W) unless the
    layout is unambiguous from the channel count (1, 3 or 4); (N, H, W) is
    grayscale. ``channels_last`` forces the reading. ``rgb=False`` keeps the
    channels as they are (N, C, H, W).
    """
    is_numpy = not isinstance(images, torch.Tensor)
    x = to_tensor(images)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim != 4:
        raise FidevalError(
            f"an image batch must have shape (N, H, W, C), (N, C, H, W) or (N, H, W), "
            f"got {tuple(x.shape)}"
        )
    else:
        if channels_last is None:
            last_ok, first_ok = x.shape[3] in (1, 3, 4), x.shape[1] in (1, 3, 4)
            channels_last = last_ok if last_ok != first_ok else is_numpy
        if channels_last:
            x = x.permute(0, 3, 1, 2)
    if not rgb:
        return x
    c = x.shape[1]
    if c == 1:
        x = x.expand(-1, 3, -1, -1)
    elif c == 4:
        x = x[:, :3]
    elif c != 3:
        raise FidevalError(
            f"images must have 1 (gray), 3 (RGB) or 4 (RGBA) channels, got shape {tuple(x.shape)}"
        )
    return x


def _check_float_range(x: torch.Tensor) -> None:
    if x.numel() == 0:
        return
    lo, hi = float(x.amin()), float(x.amax())
    if not (lo >= -_FLOAT_TOL and hi <= 1 + _FLOAT_TOL):
        hint = " (images in [-1, 1]? use (x + 1) / 2)" if lo < 0 else ""
        hint = hint or (" (images in [0, 255]? pass them as uint8)" if hi > 1 else "")
        raise FidevalError(
            f"float images must have values in [0, 1], got range [{lo:g}, {hi:g}]{hint}"
        )


def to_float01(x: torch.Tensor) -> torch.Tensor:
    """uint8 / integer images -> float32 / 255; float images checked to lie in [0, 1]."""
    if x.dtype.is_floating_point:
        _check_float_range(x)
        return x.to(torch.float32).clamp(0.0, 1.0)
    _check_int_range(x)
    return x.to(torch.float32) / 255.0


def _check_int_range(x: torch.Tensor) -> None:
    if x.dtype == torch.uint8 or x.numel() == 0:
        return
    lo, hi = int(x.amin()), int(x.amax())
    if lo < 0 or hi > 255:
        raise FidevalError(
            f"integer images must have values in [0, 255], got range [{lo}, {hi}] "
            f"(dtype {x.dtype}); convert them to uint8 or to floats in [0, 1]"
        )


def quantize_uint8(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Images -> uint8. Floats in [0, 1] are rounded: floor(255 x + 0.5), never truncated."""
    t = to_tensor(x)
    if t.dtype == torch.uint8:
        return t
    if not t.dtype.is_floating_point:
        _check_int_range(t)
        return t.to(torch.uint8)
    _check_float_range(t)
    # float64 so that k/255 and (k + 0.5)/255 land on the right side of .5
    return torch.floor(t.to(torch.float64) * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8)
