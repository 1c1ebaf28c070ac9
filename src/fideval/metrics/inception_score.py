"""Inception Score (Salimans et al., 2016) from classifier logits.

For logits z (N, C), p(y|x) = softmax(z) and, per split s of the rows,

    IS_s = exp( (1/|s|) Σ_{x∈s} KL(p(y|x) ‖ p_s(y)) ),   p_s(y) = (1/|s|) Σ_{x∈s} p(y|x),

computed in float64 from log-softmax: log p_s(y) = logsumexp_x log p(y|x) − log|s|,
KL = Σ_y p(y|x) (log p(y|x) − log p_s(y)). No ε is added (the original code adds
1e-10 inside logs; the log-softmax form needs none). The score is the mean of
IS_s over K splits (default 10) and ``is_std`` their population standard
deviation (ddof=0), as in the original code and torch-fidelity. Split s covers
rows [s·N//K, (s+1)·N//K) in the given order (the original's boundaries);
``shuffle=True`` permutes the rows first with ``numpy.random.default_rng(seed)``.

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

    def as_dict(self) -> dict[str, Any]:
        return {"is": self.value, "is_std": self.std, "splits": self.splits}


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
        value=float(values.mean()), std=float(values.std(ddof=0)), splits=splits, values=values
    )
