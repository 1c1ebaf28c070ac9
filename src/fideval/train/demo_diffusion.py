"""A tiny diffusion model for 8×8 single-channel digits, small enough to train on a CPU.

Used by ``fideval demo``: train on :func:`fideval.features.digits.load_digits_images`
and watch FID (digits-CNN features) fall while training. The interface mirrors
``denoising_diffusion_pytorch.GaussianDiffusion``: :meth:`TinyDiffusion.training_loss`
returns a scalar loss for a batch of clean images and
:meth:`TinyDiffusion.sample` ``(batch_size=…)`` returns images in [0, 1].

Model (continuous-time Gaussian diffusion, variance preserving, cosine schedule):

* data are mapped to [−1, 1]: ``x0 = 2·img − 1``;
* noising at time ``t ∈ [0, 1]``: ``x_t = α_t x0 + σ_t ε``, ``ε ~ N(0, I)``, with
  ``α_t = cos(φ_t)``, ``σ_t = sin(φ_t)``, ``φ_t = (π/2)·(t_min + (t_max − t_min)·t)``
  (the cosine schedule of Nichol & Dhariwal, ᾱ_t = α_t²);
* the network predicts the velocity ``v = α_t ε − σ_t x0`` (Salimans & Ho, 2022) and
  the loss is ``E_t,ε ‖v̂ − v‖²`` (mean over pixels): well-posed at every t, unlike ε
  prediction near t = 1;
* from ``v̂``: ``x̂0 = α_t x_t − σ_t v̂``, clipped to [−1, 1], and ``ε̂ = (x_t − α_t x̂0)/σ_t``
  (the ε consistent with the clipped x̂0; without clipping it equals ``σ_t x_t + α_t v̂``);
* sampling: DDIM (Song et al., 2021) over ``sampling_steps`` uniform times 1 → 0, from
  ``s < t``: ``x_s = α_s x̂0 + √(σ_s² − c²) ε̂ + c z`` with
  ``c = η · (σ_s/σ_t) · √(1 − α_t²/α_s²)``; ``η = 1`` is DDPM's ancestral
  sampler on the coarse grid, ``η = 0`` the deterministic DDIM ODE sampler.

Denoiser (:class:`DenoiserMLP`): the 64 pixels, flattened, through an MLP of
residual blocks (LayerNorm → Linear → SiLU → Linear) whose hidden state is shifted
and scaled by an embedding of t (sinusoidal features → MLP). An MLP suits 8×8
images: it is ~3× faster per step on a CPU than a conv net of similar quality.

:class:`EMA` keeps an exponential moving average of the weights; sampling from the
EMA copy gives clearly lower FID for the same number of training steps.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fideval.errors import FidevalError

__all__ = ["EMA", "DenoiserMLP", "TinyDiffusion", "make_optimizer", "train_step"]


class SinusoidalEmbedding(nn.Module):
    """``t ∈ [0, 1]`` ``(B,)`` → ``(B, dim)``: ``[sin(1000·t·f_k), cos(1000·t·f_k)]``,
    ``f_k = 10000^(−k/(dim/2))``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise FidevalError(f"SinusoidalEmbedding: dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = 1000.0 * t.float()[:, None] * self.freqs[None, :]
        return torch.cat([arg.sin(), arg.cos()], dim=1)


class _ResBlock(nn.Module):
    def __init__(self, hidden: int, time_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.film = nn.Linear(time_dim, 2 * hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(temb).chunk(2, dim=1)
        z = self.norm(h) * (1.0 + scale) + shift
        return h + self.fc2(F.silu(self.fc1(z)))


class DenoiserMLP(nn.Module):
    """``(x_t, t) → v̂``: MLP over the flattened image with FiLM time conditioning.

    Input ``x_t`` ``(B, C, H, W)``, ``t`` ``(B,)`` in [0, 1]; output same shape as ``x_t``.
    Parameters ≈ ``depth · (2·hidden² + 2·hidden·time_dim) + 2·pixels·hidden``
    (hidden 256, depth 3, time_dim 64: ≈ 0.5 M).
    """

    def __init__(
        self, pixels: int = 64, hidden: int = 256, depth: int = 3, time_dim: int = 64
    ) -> None:
        super().__init__()
        self.time = nn.Sequential(
            SinusoidalEmbedding(time_dim),
            nn.Linear(time_dim, time_dim),
            nn.SiLU(),
            nn.Linear(time_dim, time_dim),
            nn.SiLU(),
        )
        self.inp = nn.Linear(pixels, hidden)
        self.blocks = nn.ModuleList(_ResBlock(hidden, time_dim) for _ in range(depth))
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, pixels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time(t)
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = block(h, temb)
        return self.out(F.silu(self.out_norm(h))).view_as(x)


class TinyDiffusion(nn.Module):
    """Variance-preserving diffusion with v-prediction and a DDIM/DDPM sampler (see module doc).

    Args:
        image_size: side of the square images (8 for the digits).
        channels: image channels (1).
        hidden, depth, time_dim: size of the :class:`DenoiserMLP`.
        sampling_steps: number of denoising steps in :meth:`sample` (network evaluations).
        eta: DDIM stochasticity, 0 (deterministic ODE) … 1 (ancestral DDPM).
        t_min, t_max: the schedule angle is ``φ = (π/2)·(t_min + (t_max − t_min)·t)``;
            ``t_max < 1`` keeps α_1 > 0 (pure noise is reached to within α_1 ≈ 3e-3).
    """

    def __init__(
        self,
        image_size: int = 8,
        channels: int = 1,
        *,
        hidden: int = 256,
        depth: int = 3,
        time_dim: int = 64,
        sampling_steps: int = 50,
        eta: float = 1.0,
        t_min: float = 1e-3,
        t_max: float = 0.998,
    ) -> None:
        super().__init__()
        if sampling_steps < 1:
            raise FidevalError(f"TinyDiffusion: sampling_steps must be ≥ 1, got {sampling_steps}")
        if not 0.0 <= eta <= 1.0:
            raise FidevalError(f"TinyDiffusion: eta must be in [0, 1], got {eta}")
        if not 0.0 <= t_min < t_max <= 1.0:
            raise FidevalError(f"TinyDiffusion: need 0 ≤ t_min < t_max ≤ 1, got {t_min}, {t_max}")
        self.image_size = image_size
        self.channels = channels
        self.sampling_steps = sampling_steps
        self.eta = eta
        self.t_min = t_min
        self.t_max = t_max
        self.net = DenoiserMLP(image_size * image_size * channels, hidden, depth, time_dim)

    # -- schedule ---------------------------------------------------------
    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(α_t, σ_t)`` for ``t ∈ [0, 1]``; α² + σ² = 1."""
        phi = (math.pi / 2) * (self.t_min + (self.t_max - self.t_min) * t)
        return torch.cos(phi), torch.sin(phi)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_images(self, x0: torch.Tensor) -> None:
        shape = (self.channels, self.image_size, self.image_size)
        if x0.ndim != 4 or tuple(x0.shape[1:]) != shape:
            raise FidevalError(
                f"TinyDiffusion: expected images (B, {shape[0]}, {shape[1]}, {shape[2]}) in "
                f"[0, 1], got {tuple(x0.shape)}"
            )

    # -- training ---------------------------------------------------------
    def training_loss(
        self, x0_batch: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Mean squared v-prediction error for a batch of clean images in [0, 1], a scalar.

        ``t ~ U[0, 1]`` and ``ε ~ N(0, I)`` per image (drawn from ``generator`` when given).
        """
        self._check_images(x0_batch)
        x0 = x0_batch.to(self.device, torch.float32) * 2.0 - 1.0
        b = x0.shape[0]
        t = torch.rand(b, generator=generator, device=x0.device)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device)
        a, s = self.alpha_sigma(t)
        a, s = a.view(b, 1, 1, 1), s.view(b, 1, 1, 1)
        xt = a * x0 + s * eps
        v = a * eps - s * x0
        return F.mse_loss(self.net(xt, t), v)

    # -- sampling ---------------------------------------------------------
    @torch.inference_mode()
    def sample(
        self,
        batch_size: int = 16,
        generator: torch.Generator | None = None,
        *,
        steps: int | None = None,
        eta: float | None = None,
        noise: Any = None,
    ) -> torch.Tensor:
        """Draw ``batch_size`` images, ``(B, C, H, W)`` float32 in [0, 1].

        ``steps`` (default ``sampling_steps``) network evaluations of the DDIM update
        (module doc); ``eta`` defaults to the constructor's. Noise comes from
        ``generator`` when given (a CPU generator for a CPU model), so seeded sampling
        is reproducible. ``noise`` (a :class:`fideval.train.samplers.SampleNoise`, or
        anything whose ``randn(*shape, device=…)`` returns (B, *shape)) gives each image
        its own noise instead: one call draws image j's initial noise and every ancestral
        step's, ``(k, C, H, W)`` with k = ``steps`` (η > 0) or 1 (η = 0), so image j does
        not depend on the batch it is drawn in (common random numbers). Runs in eval mode
        and restores the previous mode.
        """
        steps = self.sampling_steps if steps is None else int(steps)
        eta = self.eta if eta is None else float(eta)
        if steps < 1:
            raise FidevalError(f"TinyDiffusion.sample: steps must be ≥ 1, got {steps}")
        was_training = self.training
        self.eval()
        try:
            dev = self.device
            shape = (batch_size, self.channels, self.image_size, self.image_size)
            draws: torch.Tensor | None = None
            if noise is not None:
                if len(noise) != batch_size:
                    raise FidevalError(
                        f"TinyDiffusion.sample: noise holds {len(noise)} samples' streams, "
                        f"expected batch_size={batch_size}"
                    )
                draws = noise.randn(steps if eta > 0 else 1, *shape[1:], device=dev)
                x = draws[:, 0]
            else:
                x = torch.randn(shape, generator=generator, device=dev)
            times = torch.linspace(1.0, 0.0, steps + 1, device=dev)
            for i in range(steps):
                t, s = times[i], times[i + 1]
                a_t, s_t = self.alpha_sigma(t)
                a_s, s_s = self.alpha_sigma(s)
                v = self.net(x, t.expand(batch_size))
                x0 = (a_t * x - s_t * v).clamp(-1.0, 1.0)
                eps = (x - a_t * x0) / s_t
                if i == steps - 1:
                    x = x0
                    break
                ratio = a_t / a_s
                c = eta * (s_s / s_t) * torch.sqrt(torch.clamp(1.0 - ratio * ratio, min=0.0))
                d = torch.sqrt(torch.clamp(s_s * s_s - c * c, min=0.0))
                x = a_s * x0 + d * eps
                if eta > 0:
                    z = (
                        draws[:, i + 1]
                        if draws is not None
                        else torch.randn(shape, generator=generator, device=dev)
                    )
                    x = x + c * z
            return ((x + 1.0) / 2.0).clamp(0.0, 1.0).float()
        finally:
            self.train(was_training)


class EMA:
    """Exponential moving average of a model's parameters: ``θ̄ ← β θ̄ + (1 − β) θ``.

    ``EMA(model, decay)`` deep-copies ``model`` (``.model``, eval mode, no grad);
    call :meth:`update` after each optimizer step. The effective decay warms up as
    ``min(decay, (1 + n)/(10 + n))`` after ``n`` updates so that early samples are not
    dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise FidevalError(f"EMA: decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        beta = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - beta)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)


def make_optimizer(
    model: nn.Module, lr: float = 2e-3, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """AdamW over ``model``'s parameters, fused (one kernel for all tensors) where supported.

    The per-tensor loop of the default CPU AdamW costs more than the forward pass of
    this small model; the fused/foreach variants remove most of that overhead.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):  # older torch or a device without a fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)


def train_step(
    model: TinyDiffusion,
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
    *,
    ema: EMA | None = None,
    generator: torch.Generator | None = None,
    grad_clip: float | None = 1.0,
) -> float:
    """One optimisation step on ``batch`` (images in [0, 1]); returns the loss as a float.

    zero_grad → ``training_loss`` → backward → optional grad-norm clip → step → EMA update.
    """
    model.train()
    loss = model.training_loss(batch, generator=generator)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
    optimizer.step()
    if ema is not None:
        ema.update(model)
    return float(loss.detach())
