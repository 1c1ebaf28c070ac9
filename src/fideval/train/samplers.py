"""Samplers: whatever a training loop can draw images from, as ``fn(batch_size) -> images``.

Accepted: a callable ``sample(batch_size) -> images``; an object with
``.sample(batch_size=…)`` (denoising-diffusion-pytorch's ``GaussianDiffusion``, fideval's
``TinyDiffusion``). Images are float tensors in [0, 1], shape (B, C, H, W); anything
else is an error naming the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import FidevalError

ImageSampler = Callable[[int], torch.Tensor]

#: Values this far outside [0, 1] are an error, not round-off of a clamp.
RANGE_TOLERANCE = 1e-3


def as_image_sampler(sampler: Any) -> ImageSampler:
    """Wrap ``sampler`` as ``fn(batch_size) -> (B, C, H, W) float images in [0, 1]``."""
    if hasattr(sampler, "sample") and callable(sampler.sample):

        def draw(batch_size: int) -> torch.Tensor:
            return sampler.sample(batch_size=batch_size)
    elif callable(sampler):
        draw = sampler
    else:
        raise FidevalError(
            f"sampler: expected a callable sample(batch_size) or an object with "
            f".sample(batch_size=...), got {type(sampler).__name__}"
        )
    return draw


def check_images(images: Any, batch_index: int, batch_size: int) -> torch.Tensor:
    """Validate one sampler batch: a float tensor (B, C, H, W) in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise FidevalError(
            f"sampler batch {batch_index}: expected a torch.Tensor of images, "
            f"got {type(images).__name__}"
        )
    if images.ndim != 4 or images.shape[0] != batch_size:
        raise FidevalError(
            f"sampler batch {batch_index}: expected shape ({batch_size}, C, H, W), "
            f"got {tuple(images.shape)}"
        )
    if not images.dtype.is_floating_point:
        raise FidevalError(
            f"sampler batch {batch_index}: expected float images in [0, 1], got {images.dtype}"
        )
    lo, hi = float(images.min()), float(images.max())
    if not (lo >= -RANGE_TOLERANCE and hi <= 1 + RANGE_TOLERANCE):
        raise FidevalError(
            f"sampler batch {batch_index}: values in [{lo:.4g}, {hi:.4g}]; expected images in "
            f"[0, 1] (unnormalize samples in [−1, 1] with (x + 1) / 2)"
        )
    return images.clamp(0.0, 1.0)
