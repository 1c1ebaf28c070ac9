"""Inception Score (Salimans et al., 2016) from classifier logits.

For logits z (N, C), p(y|x) = softmax(z) and, per split s of the rows,

    IS_s = exp( (1/|s|) Σ_{x∈s} KL(p(y|x) ‖ p_s(y)) ),   p_s(y) = (1/|s|) Σ_{x∈s} p(y|x),

computed in float64 from log-softmax: log p_s(y) = logsumexp_x log p(y|x) − log|s|,
KL = Σ_y p(y|x) (log p(y|x) − log p_s(y)), with 0·log 0 = 0. No ε is added
anywhere (the original improved-gan code adds none either: it takes
``np.log(part)`` of the softmax). The score is the mean of IS_s over K splits
(default 10) and ``is_std`` their population standard deviation (ddof=0), as in
the original code and torch-fidelity. Split s covers rows [s·N//K, (s+1)·N//K)
in the given order (the original's boundaries); ``shuffle=True`` permutes the
rows first with ``numpy.random.default_rng(seed)``.

Logits from images (``fideval is IMAGES``, ``fideval.evaluate(..., metrics=['is'])``)
are those of the protocol: z = pool3·Wᵀ, the FID Inception's 2048 pool3
features times its fc weights **without the fc bias**, as the original code
(``tf.matmul(pool3, w)``), torch-fidelity (``logits_unbiased``), torchmetrics and
the ADM evaluator compute them. ``logits_bias=True`` (``--logits-with-bias``)
adds the bias (pool3·Wᵀ + b, the network's fc output), which moves the score
(CIFAR-10: ≈ +2.5 %); the choice is recorded in the result.

Classes: all C columns given are used. The FID Inception network (pytorch-fid,
ported from the TF 2015 graph) has 1008 logits: the 1000 ImageNet classes plus
extra entries of that graph, which get near-zero probability. The original TF
Inception Score code and torch-fidelity take the softmax over all 1008, so
fideval does too when given those logits; to use another class set, slice the
columns yourself before calling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import FidevalError
from ._distances import as_features


@dataclass(frozen=True)
class InceptionScoreResult:
    """Mean IS over splits, std (ddof=0) and per-split values."""

    value: float
    std: float
    splits: int
    values: np.ndarray = field(repr=False)
    #: For scores of images: whether the logits included the fc bias (``False`` is
    #: the protocol's pool3·Wᵀ); ``None`` when logits were given directly.
    logits_bias: bool | None = None
    #: For scores of images: extractor, weights, profile, source and logits form.
    provenance: dict[str, Any] | None = field(default=None, repr=False)
    #: What to know about the input (it looks like probabilities; an unusual width).
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"is": self.value, "is_std": self.std, "splits": self.splits}
        if self.logits_bias is not None:
            out["logits_bias"] = self.logits_bias
        return out


def inception_score(
    logits: Any,
    *,
    splits: int = 10,
    shuffle: bool = False,
    seed: int = 0,
    device: str | torch.device | None = None,
    name: str = "logits",
) -> InceptionScoreResult:
    """Inception Score of classifier ``logits`` (N, C); see module doc for the formula.

    ``logits`` are unnormalised scores (not probabilities). Each split must hold
    at least 1 row (N ≥ ``splits``); the score is dimensionless, in [1, C].
    """
    if splits < 1:
        raise FidevalError(f"splits must be ≥ 1, got {splits}")
    z = as_features(logits, name, min_rows=splits, device=device)
    if z.shape[1] < 2:
        raise FidevalError(f"{name}: {z.shape[1]} classes; the Inception Score needs C ≥ 2 logits")
    n = z.shape[0]
    if shuffle:
        perm = np.random.default_rng(seed).permutation(n)
        z = z[torch.from_numpy(perm).to(z.device)]
    logp = torch.log_softmax(z, dim=1)
    values = np.empty(splits, dtype=np.float64)
    for s in range(splits):
        part = logp[s * n // splits : (s + 1) * n // splits]
        log_py = torch.logsumexp(part, dim=0) - math.log(part.shape[0])
        p = part.exp()
        # 0·log 0 = 0: a class with p = 0 (log-softmax −inf) contributes nothing.
        terms = torch.where(p > 0, p * (part - log_py[None, :]), torch.zeros_like(p))
        kl = terms.sum(dim=1)
        values[s] = math.exp(float(kl.mean()))
    return InceptionScoreResult(
        value=float(values.mean()),
        std=float(values.std(ddof=0)),
        splits=splits,
        values=values,
        warnings=_input_warnings(z, name),
    )


#: Output widths of the classifiers the Inception Score is used with: the FID
#: Inception (1008), torchvision / timm ImageNet heads (1000, 1001 with background),
#: CIFAR-10 / -100 and MNIST-style classifiers (10, 100).
CLASSIFIER_WIDTHS = (10, 100, 1000, 1001, 1008)


def _input_warnings(z: torch.Tensor, name: str) -> tuple[str, ...]:
    """Warnings for inputs that are probably not logits."""
    out = []
    rows = z.sum(dim=1)
    if bool((z >= 0).all()) and bool(torch.allclose(rows, torch.ones_like(rows), atol=1e-4)):
        out.append(
            f"{name}: every row is non-negative and sums to 1: these look like probabilities, "
            "not logits; the score of softmax(p) is close to 1 whatever the images. Pass the "
            "logits (or log-probabilities)"
        )
    if z.shape[1] not in CLASSIFIER_WIDTHS:
        out.append(
            f"{name}: {z.shape[1]} columns, a width no common classifier has "
            f"({', '.join(map(str, CLASSIFIER_WIDTHS))}); are these features rather than logits?"
        )
    return tuple(out)


def logits_form(bias: bool) -> str:
    """How the logits of images were formed, for provenance."""
    return "pool3·Wᵀ + b (fc with bias)" if bias else "pool3·Wᵀ (fc weights, no bias)"
