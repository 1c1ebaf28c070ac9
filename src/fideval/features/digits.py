"""A small CNN feature extractor for scikit-learn's 8×8 handwritten digits.

The Inception network of FID expects 299×299 RGB photographs; on 8×8 grey digits
its features mean little and cost ~0.1 s per image on a CPU. For the offline
``fideval demo`` (a tiny diffusion model trained on
:func:`sklearn.datasets.load_digits`) fideval ships a purpose-trained classifier
instead, in the spirit of the LeNet-based "FID" used for MNIST papers:

* architecture (:class:`DigitsCNN`), input ``(B, 1, 8, 8)`` float in [0, 1]::

      conv3×3(1→16, pad 1) → SiLU → conv3×3(16→32, pad 1) → SiLU → maxpool 2   (32×4×4)
      conv3×3(32→32, pad 1) → SiLU → maxpool 2                                  (32×2×2)
      flatten (128) → linear(128→64) = **features** → SiLU → linear(64→10) = logits

* features: the 64-d *pre-activation* of the penultimate linear layer. SiLU
  (not ReLU) in the trunk and taking the features before the activation keep
  every dimension alive and continuous: with ReLU, 4 of 32 channels died and
  the 64×64 feature covariance of the 1 797 digits had ~5 eigenvalues below
  1e-9 (rank deficient); with SiLU its eigenvalues span ≈ 4e-3 … 1.8e2, so Σ is
  positive definite for N ≳ 100 images and the Fréchet distance
  ``FD = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½)`` is well conditioned.
* weights: ``fideval/features/weights/digits_cnn.pt`` (a ``state_dict``), trained
  by ``scripts/train_digits_extractor.py``; the recipe (seed, split, epochs,
  optimizer, held-out accuracy, SHA-256) is ``digits_cnn.json`` next to it.

Units: FID values computed with this extractor are in squared feature units of
this network; they are comparable only between runs that use the same weights
(``weights_sha256``) and the same preprocessing profile (``digits-8x8-unit``:
8×8 single-channel, pixel values scaled to [0, 1] by ``/16``).
"""

from __future__ import annotations

import hashlib
import io
import json
from importlib import resources
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fideval.errors import FidevalError
from fideval.features.base import FrozenModule, resolve_device

__all__ = [
    "DIGITS_EXTRACTOR_ID",
    "DIGITS_PROFILE",
    "DigitsCNN",
    "DigitsFeatureExtractor",
    "digits_recipe",
    "digits_split",
    "load_digits_arrays",
    "load_digits_images",
]

DIGITS_EXTRACTOR_ID = "digits-cnn"
DIGITS_PROFILE = "digits-8x8-unit"
DIGITS_IMAGE_SIZE = 8
DIGITS_FEATURE_DIMS = 64
WEIGHTS_FILE = "digits_cnn.pt"
RECIPE_FILE = "digits_cnn.json"
#: Maximum pixel value in ``sklearn.datasets.load_digits`` (values are integers 0..16).
DIGITS_MAX_VALUE = 16.0


class DigitsCNN(nn.Module):
    """The classifier whose penultimate layer is the digits feature space.

    ``forward(x)`` returns logits ``(B, 10)``; ``features(x)`` returns the 64-d
    pre-activation of the penultimate layer ``(B, 64)``. Input: ``(B, 1, 8, 8)``
    float in [0, 1]. About 23 k parameters (≈ 95 KB in float32).
    """

    def __init__(self, feature_dims: int = DIGITS_FEATURE_DIMS, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.SiLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.fc1 = nn.Linear(32 * 2 * 2, feature_dims)
        self.fc2 = nn.Linear(feature_dims, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate pre-activation features, ``(B, feature_dims)``."""
        return self.fc1(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, ``(B, num_classes)``."""
        return self.fc2(F.silu(self.features(x)))


# ---------------------------------------------------------------------------
# Package data
# ---------------------------------------------------------------------------


def _weights_resource(name: str) -> Any:
    return resources.files("fideval.features").joinpath("weights").joinpath(name)


def _read_resource_bytes(name: str) -> bytes:
    res = _weights_resource(name)
    try:
        return res.read_bytes()
    except (FileNotFoundError, OSError) as exc:
        raise FidevalError(
            f"digits extractor: package data file 'fideval/features/weights/{name}' is "
            f"missing or unreadable ({exc}); it ships with fideval — reinstall the package, "
            "or regenerate it with `python scripts/train_digits_extractor.py`"
        ) from exc


def digits_recipe() -> dict[str, Any]:
    """The training recipe shipped with the weights (``digits_cnn.json``) as a dict."""
    return json.loads(_read_resource_bytes(RECIPE_FILE).decode("utf-8"))


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: ``(1797, 8, 8)`` float64 raw values 0..16 and ``(1797,)`` int64.

    Imports scikit-learn lazily (optional extra ``fideval[demo]``); the data set
    ships inside scikit-learn, so no download is needed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FidevalError(
            "the 8×8 digits data set needs scikit-learn, which is not installed; "
            "install the demo extra: pip install 'fideval[demo]' (or pip install scikit-learn)"
        ) from exc
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.int64)
    return images, labels


def load_digits_images() -> torch.Tensor:
    """All 1 797 digits as a float32 tensor ``(1797, 1, 8, 8)`` in [0, 1] (raw values / 16)."""
    images, _ = load_digits_arrays()
    return torch.from_numpy((images / DIGITS_MAX_VALUE).astype(np.float32)).unsqueeze(1)


def digits_split(
    labels: np.ndarray, seed: int = 0, test_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded train/test split: ``(train_idx, test_idx)``, both sorted int64.

    For each class c (in increasing order) the indices of class c are permuted
    with one ``numpy.random.default_rng(seed)`` generator (drawn in class order)
    and the first ``round(test_fraction · n_c)`` go to the test split. Pure numpy,
    so the split is identical across platforms and library versions.
    """
    if not 0.0 < test_fraction < 1.0:
        raise FidevalError(f"digits_split: test_fraction must be in (0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test_parts = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        test_parts.append(idx[: round(test_fraction * idx.size)])
    test_idx = np.sort(np.concatenate(test_parts)).astype(np.int64)
    mask = np.ones(labels.size, dtype=bool)
    mask[test_idx] = False
    train_idx = np.flatnonzero(mask).astype(np.int64)
    return train_idx, test_idx


# ---------------------------------------------------------------------------
# Extractor
# ---------------------------------------------------------------------------


class DigitsFeatureExtractor(FrozenModule):
    """Frozen digits CNN mapping ``(B, 1, 8, 8)`` images in [0, 1] to ``(B, 64)`` float32 features.

    Loads the weights shipped in package data, checks their SHA-256 against the
    recipe, stays in eval mode (``train()`` is a no-op) and runs under
    ``torch.inference_mode()``. Also accepts ``(B, 8, 8)``; float inputs of any
    floating dtype are cast to float32 on the module's device.

    Attributes: ``id`` (``"digits-cnn"``), ``dims`` (64), ``weights_sha256``,
    ``profile`` (``"digits-8x8-unit"``), ``image_size`` (8).
    """

    id: str = DIGITS_EXTRACTOR_ID
    profile: str = DIGITS_PROFILE
    image_size: int = DIGITS_IMAGE_SIZE

    def __init__(self, device: str | torch.device | None = None) -> None:
        super().__init__()
        raw = _read_resource_bytes(WEIGHTS_FILE)
        self.weights_sha256: str = hashlib.sha256(raw).hexdigest()
        recipe = digits_recipe()
        expected = recipe.get("weights_sha256")
        if expected is not None and expected != self.weights_sha256:
            raise FidevalError(
                f"digits extractor: SHA-256 of fideval/features/weights/{WEIGHTS_FILE} is "
                f"{self.weights_sha256}, but {RECIPE_FILE} records {expected}; the package "
                "data is corrupt or out of date — reinstall fideval"
            )
        arch = recipe.get("architecture", {})
        self.dims: int = int(arch.get("feature_dims", DIGITS_FEATURE_DIMS))
        self.net = DigitsCNN(feature_dims=self.dims)
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.net.to(resolve_device(device))
        super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``(B, dims)`` float32 of 8×8 images ``(B, 1, 8, 8)``, ``(B, 8, 8)`` or
        ``(B, 3, 8, 8)`` (gray repeated, as image folders give: the channel mean is used),
        uint8 or float in [0, 1]."""
        if not isinstance(images, torch.Tensor):
            raise FidevalError(
                f"digits extractor: expected a torch.Tensor, got {type(images).__name__}"
            )
        x = images
        if not (x.dtype == torch.uint8 or x.is_floating_point()):
            raise FidevalError(
                f"digits extractor: expected uint8 or float images in [0, 1], got dtype "
                f"{x.dtype} (for raw load_digits values 0..16 divide by 16)"
            )
        if x.is_floating_point() and x.numel():
            lo, hi = float(x.min()), float(x.max())
            if lo < -1e-6 or hi > 1 + 1e-6:
                raise FidevalError(
                    f"digits extractor: float images must lie in [0, 1], got values in "
                    f"[{lo:.3g}, {hi:.3g}] (uint8 images: pass them as uint8)"
                )
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.ndim == 4 and x.shape[1] in (3, 4):  # the contract's RGB(A): gray = channel mean
            # in [0, 1] floats for both input types, so a uint8 image and its float copy
            # agree (a gray image's mean is exact either way)
            scale = 1.0 if x.is_floating_point() else 255.0
            x = x[:, :3].float().mean(dim=1, keepdim=True) / scale
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, DIGITS_IMAGE_SIZE, DIGITS_IMAGE_SIZE):
            raise FidevalError(
                "digits extractor: expected 8×8 images (B, 1, 8, 8), (B, 3, 8, 8) or (B, 8, 8), "
                f"uint8 or float in [0, 1], got {tuple(images.shape)}"
            )
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif not x.is_floating_point():
            raise FidevalError(
                f"digits extractor: expected uint8 or float images in [0, 1], got dtype "
                f"{x.dtype} (for raw load_digits values 0..16 divide by 16)"
            )
        with torch.inference_mode():
            x = x.to(device=self.device, dtype=torch.float32)
            return self.net.features(x).float()

    def provenance(self) -> dict[str, Any]:
        """What identifies this feature space in a statistics file's ``meta``."""
        return {
            "extractor": self.id,
            "weights_sha256": self.weights_sha256,
            "dims": self.dims,
            "profile": self.profile,
            "image_size": self.image_size,
        }

    def extra_repr(self) -> str:
        return f"id={self.id!r}, dims={self.dims}, sha256={self.weights_sha256[:12]}…"
