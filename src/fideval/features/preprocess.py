"""Named preprocessing profiles: images -> network input (B, 3, 299, 299) in [-1, 1].

The same images give different FIDs under different resizing and
quantization, so the profile is part of every statistic's provenance and two
statistics made with different profiles are not compared.

``pytorch-fid``
    Float images in [0, 1] (uint8 images are divided by 255), bilinear resize to
    299x299 with ``F.interpolate(align_corners=False)``, then ``2x - 1``:
    exactly pytorch-fid's ``InceptionV3(resize_input=True, normalize_input=True)``.
``clean``
    clean-fid's choice: uint8 images (float images are quantized first), each
    channel resized separately by PIL's bicubic filter in float mode ``'F'``
    to 299x299, clipped to [0, 255], then ``(x - 128) / 128`` as clean-fid does
    before its network.

Images given to :func:`preprocess_image` are one image as an array
(H, W), (H, W, C) or a tensor (C, H, W); :func:`preprocess_batch` takes (N, ...)
batches. Grayscale is repeated to 3 channels and an alpha channel is dropped
(as PIL's ``convert("RGB")`` does). Float images must lie in [0, 1]; where a
profile needs uint8 they are quantized by rounding, ``floor(255 x + 0.5)``,
never by truncation (the convention of ``torchvision.utils.save_image``, so a
float image and its saved PNG give the same input).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.layout import quantize_uint8, to_float01, to_nchw, to_tensor
from ..errors import FidevalError

IMAGE_SIZE = 299


@dataclass(frozen=True)
class Profile:
    """A preprocessing profile: its name, the dtype it starts from, and its function."""

    name: str
    input_dtype: str  # "float" (values in [0, 1]) or "uint8"
    description: str
    _batch_fn: Callable[[torch.Tensor], torch.Tensor]
    image_size: int = IMAGE_SIZE

    def __call__(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        return preprocess_batch(images, self)

    def provenance(self) -> dict[str, object]:
        return {"profile": self.name, "image_size": self.image_size}


__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "Profile",
    "get_profile",
    "preprocess_batch",
    "preprocess_image",
    "quantize_uint8",
    "to_float01",
    "to_nchw",
]


# --------------------------------------------------------------------------- profiles


def _pytorch_fid_batch(x: torch.Tensor) -> torch.Tensor:
    x = to_float01(x)
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return 2 * x - 1


def pil_bicubic_resize(image_hwc: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """clean-fid's resize: each channel of a uint8 (H, W, 3) image resized by PIL's
    bicubic filter in float mode 'F', clipped to [0, 255] -> float32 (size, size, 3)."""
    out = np.empty((size, size, image_hwc.shape[2]), dtype=np.float32)
    for c in range(image_hwc.shape[2]):
        channel = Image.fromarray(image_hwc[:, :, c].astype(np.float32), mode="F")
        channel = channel.resize((size, size), resample=Image.BICUBIC)
        out[:, :, c] = np.asarray(channel).clip(0, 255)
    return out


def _clean_batch(x: torch.Tensor) -> torch.Tensor:
    u8 = quantize_uint8(x).permute(0, 2, 3, 1).cpu().numpy()
    resized = np.stack([pil_bicubic_resize(img) for img in u8])
    t = torch.from_numpy(resized).permute(0, 3, 1, 2)
    # clean-fid normalizes inside its network as (x - 128) / 128, in float32.
    return ((t - 128) / 128).contiguous()


PROFILES: dict[str, Profile] = {
    "pytorch-fid": Profile(
        name="pytorch-fid",
        input_dtype="float",
        description="float [0,1], bilinear F.interpolate to 299 (align_corners=False), 2x-1",
        _batch_fn=_pytorch_fid_batch,
    ),
    "clean": Profile(
        name="clean",
        input_dtype="uint8",
        description="uint8 (floats rounded), PIL bicubic per channel in mode 'F' to 299, "
        "clip [0,255], (x-128)/128",
        _batch_fn=_clean_batch,
    ),
}
DEFAULT_PROFILE = "pytorch-fid"


def get_profile(profile: str | Profile) -> Profile:
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise FidevalError(
            f"unknown preprocessing profile {profile!r}; expected one of {sorted(PROFILES)}"
        ) from None


def preprocess_batch(
    images: np.ndarray | torch.Tensor,
    profile: str | Profile = DEFAULT_PROFILE,
    *,
    channels_last: bool | None = None,
) -> torch.Tensor:
    """A batch of same-size images -> float32 (N, 3, 299, 299) network input."""
    prof = get_profile(profile)
    x = to_nchw(images, channels_last=channels_last)
    return prof._batch_fn(x).to(torch.float32)


def preprocess_image(
    image: np.ndarray | torch.Tensor,
    profile: str | Profile = DEFAULT_PROFILE,
) -> torch.Tensor:
    """One image (H, W), (H, W, C) array or (C, H, W) tensor -> (3, 299, 299)."""
    x = to_tensor(image)
    if x.ndim == 2:
        x = x[None, None]
        layout: bool | None = False
    elif x.ndim == 3:
        x = x[None]
        layout = None
    else:
        raise FidevalError(f"one image must be 2-D or 3-D, got shape {tuple(x.shape)}")
    return preprocess_batch(
        x if isinstance(image, torch.Tensor) else x.numpy(), profile, channels_last=layout
    )[0]
