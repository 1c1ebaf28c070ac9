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

Logits from images (:func:`inception_score_from_images`, ``fideval is IMAGES``)
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
from dataclasses import dataclass, field, replace
from pathlib import Path
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

    def as_dict(self) -> dict[str, Any]:
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
        value=float(values.mean()), std=float(values.std(ddof=0)), splits=splits, values=values
    )


def _logits_form(bias: bool) -> str:
    return "pool3·Wᵀ + b (fc with bias)" if bias else "pool3·Wᵀ (fc weights, no bias)"


def inception_score_from_images(
    source: Any,
    *,
    splits: int = 10,
    shuffle: bool = False,
    seed: int = 0,
    logits_bias: bool = False,
    extractor: Any | None = None,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
    profile: str = "pytorch-fid",
    batch_size: int = 50,
    num_workers: int | None = None,
    skip_bad: bool = False,
    progress: bool = False,
) -> InceptionScoreResult:
    """Inception Score of images through the FID Inception (see module doc).

    ``source``: anything :func:`fideval.data.images.iter_image_batches` reads (a
    folder, an image array file, a uint8 array or tensor, ...) or an
    :class:`~fideval.data.images.ImageStream`. Logits z = pool3·Wᵀ (1008 classes,
    **no fc bias**: the protocol of the original code, torch-fidelity and
    torchmetrics); ``logits_bias=True`` uses pool3·Wᵀ + b instead. Then
    :func:`inception_score` with ``splits``, ``shuffle`` and ``seed``.
    ``extractor``: an :class:`~fideval.features.inception.InceptionExtractor`
    (default: built from ``weights``, ``device`` and ``profile``). The result
    records ``logits_bias`` and the provenance (extractor, weights, source).
    Dimensionless, in [1, 1008].
    """
    from ..data.images import ImageStream, iter_image_batches
    from ..features.inception import InceptionExtractor

    if not isinstance(logits_bias, bool):
        raise FidevalError(f"logits_bias must be True or False, got {logits_bias!r}")
    if extractor is None:
        extractor = InceptionExtractor(2048, weights=weights, device=device, profile=profile)
    if isinstance(source, ImageStream):
        if source.profile != extractor.profile:
            raise FidevalError(
                f"the image stream uses profile {source.profile!r} but the extractor was made "
                f"for {extractor.profile!r}"
            )
        stream = source
    else:
        stream = iter_image_batches(
            source,
            batch_size=batch_size,
            num_workers=num_workers,
            preprocess=extractor.worker_preprocess,
            skip_bad=skip_bad,
            progress=progress,
        )
    parts = []
    for images in stream:
        parts.append(extractor.logits(images, bias=logits_bias).to("cpu", torch.float64))
    if not parts:
        raise FidevalError(f"{stream.description().get('source', source)!s}: no images")
    logits = torch.cat(parts)
    desc = stream.description()
    res = inception_score(
        logits, splits=splits, shuffle=shuffle, seed=seed, name=f"{desc.get('source')} logits"
    )
    provenance = {
        **extractor.provenance(),
        **desc,
        "n": int(logits.shape[0]),
        "classes": int(logits.shape[1]),
        "logits": _logits_form(logits_bias),
        "logits_bias": logits_bias,
    }
    return replace(res, logits_bias=logits_bias, provenance=provenance)
