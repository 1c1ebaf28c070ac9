"""Samplers: whatever a training loop can draw images from, as ``fn(batch_size) -> images``.

Accepted: a callable ``sample(batch_size) -> images``; an object with
``.sample(batch_size=…)`` (denoising-diffusion-pytorch's ``GaussianDiffusion``, fideval's
``TinyDiffusion``). Images are float tensors in [0, 1], shape (B, C, H, W); anything
else is an error naming the batch.

**Common random numbers** (``FIDEvaluator(paired=True)``): sample i of every evaluation
is drawn from the same noise, which depends on (seed, i) only — not on the batch size,
the number of ranks, the batch's position or the training step. :class:`SampleNoise`
holds that noise for one batch of global sample indices; :func:`as_paired_sampler`
hands it to the sampler in one of these ways (first that applies):

1. a ``noise`` keyword: ``sample(batch_size, noise=noise)``. The sampler draws every
   random number it needs from it: ``noise.randn(*shape)`` returns (B, *shape) with row j
   taken from sample j's own stream (successive calls continue each stream), e.g. the
   initial noise ``noise.randn(C, H, W)`` for a deterministic (ODE) sampler, or one call
   per step for an ancestral one; or ``noise.seeds`` (one integer seed per sample, as
   EDM's ``StackedRandomGenerator`` takes) or ``noise.generators`` (one CPU
   ``torch.Generator`` per sample). fideval's ``TinyDiffusion`` takes ``noise``.
2. denoising-diffusion-pytorch's ``GaussianDiffusion`` (DDPM and DDIM loops): its
   ``torch.randn`` / ``torch.randn_like`` calls are routed to ``noise.randn`` for the
   duration of ``sample`` (:mod:`fideval.train.integrations.denoising_diffusion_pytorch`).
3. a ``generator`` keyword: it receives ``noise.generators``, a list of B generators
   (diffusers pipelines' convention: image j from ``generator[j]``).

A single generator or a seed per *batch* cannot give per-sample noise: the rows a
generator produces depend on how many samples share it, so changing the batch size or the
number of ranks would change every sample's noise. Any other sampler is refused with
``paired=True`` (a :class:`~fideval.errors.FidevalError` listing these ways).

Per-sample seeds are splitmix64(splitmix64(seed) + (i + 1)·φ), φ = 0x9E3779B97F4A7C15
(the splitmix64 sequence of the hashed seed at position i), shifted right by one bit
(below 2⁶³). The generators are CPU generators, so the noise is the same on every device.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import FidevalError

ImageSampler = Callable[[int], torch.Tensor]
PairedSampler = Callable[[int, "SampleNoise"], torch.Tensor]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MASK = (1 << 64) - 1


def _splitmix64(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def sample_seeds(seed: int, start: int, count: int) -> list[int]:
    """Seeds of samples ``start … start + count − 1``: a function of (seed, index) only."""
    base = _splitmix64(np.array([int(seed) & _MASK], dtype=np.uint64))[0]
    idx = np.arange(start + 1, start + count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = base + idx * _GOLDEN
    return [int(v) for v in _splitmix64(z) >> np.uint64(1)]


class SampleNoise:
    """The noise of one batch of samples with global indices ``start … start + count − 1``.

    Sample i's stream is a CPU ``torch.Generator`` seeded with ``sample_seeds(seed, i)``;
    :meth:`randn` draws from every stream at once, so the rows never depend on which
    other samples share the batch.
    """

    def __init__(self, seed: int, start: int, count: int) -> None:
        if count < 0 or start < 0:
            raise FidevalError(f"SampleNoise: need start ≥ 0 and count ≥ 0, got {start}, {count}")
        self.seed = int(seed)
        self.indices = range(int(start), int(start) + int(count))
        self.seeds = sample_seeds(seed, start, count)
        self._generators: list[torch.Generator] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def generators(self) -> list[torch.Generator]:
        """One CPU generator per sample (created on first use, then consumed in order)."""
        if self._generators is None:
            self._generators = [torch.Generator().manual_seed(s) for s in self.seeds]
        return self._generators

    def randn(
        self,
        *shape: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Standard normal noise (B, *shape): row j from sample j's stream (next numbers)."""
        dims = tuple(int(s) for s in shape)
        if not self.indices:
            return torch.empty((0, *dims), device=device, dtype=dtype)
        rows = [torch.randn(dims, generator=g) for g in self.generators]
        return torch.stack(rows).to(device=device, dtype=dtype or torch.get_default_dtype())


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


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def as_paired_sampler(sampler: Any) -> PairedSampler:
    """Wrap ``sampler`` as ``fn(batch_size, noise) -> images`` drawing from ``noise``
    (a :class:`SampleNoise`); the module docstring lists the ways a sampler can take it."""
    from .integrations.denoising_diffusion_pytorch import is_gaussian_diffusion, sample_with_noise

    if is_gaussian_diffusion(sampler):
        return lambda batch_size, noise: sample_with_noise(sampler, batch_size, noise)
    is_object = hasattr(sampler, "sample") and callable(sampler.sample)
    fn = sampler.sample if is_object else sampler
    if not callable(fn):
        raise FidevalError(
            f"sampler: expected a callable sample(batch_size) or an object with "
            f".sample(batch_size=...), got {type(sampler).__name__}"
        )

    # Objects: .sample(batch_size=…) as before; plain callables: the count positionally.
    def call(batch_size: int, **kw: Any) -> torch.Tensor:
        return fn(batch_size=batch_size, **kw) if is_object else fn(batch_size, **kw)

    if _accepts(fn, "noise"):
        return lambda batch_size, noise: call(batch_size, noise=noise)
    if _accepts(fn, "generator"):
        return lambda batch_size, noise: call(batch_size, generator=noise.generators)
    raise FidevalError(
        f"paired=True: the sampler {type(sampler).__name__} takes no per-sample noise; give "
        f"it a 'noise' keyword (a fideval.train.samplers.SampleNoise: noise.randn(*shape), "
        f"noise.seeds or noise.generators, one stream per sample), or a 'generator' keyword "
        f"taking one generator per image (denoising-diffusion-pytorch's GaussianDiffusion is "
        f"supported as it is)"
    )


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
