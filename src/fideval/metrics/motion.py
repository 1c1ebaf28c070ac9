"""Text-to-motion evaluation suite (HumanML3D / KIT-ML protocol of Guo et al., 2022).

Inputs are evaluator embeddings: paired text and motion embeddings T, M (N, d),
ground-truth motion embeddings G (N_gt, d), and for MultiModality an array
(num_texts, num_repeats, d) of motions generated repeatedly from the same text.
All distances are Euclidean, in the units of the embeddings, in float64.

* **R-precision** (top-1..top-k): pairs are cut into consecutive blocks of
  ``pool`` (32 in the protocol, where it is the loader batch size) in the given
  order (or after a seeded shuffle); an incomplete last block is dropped, as the
  protocol's loaders drop it. Within a block, text i ranks the block's motions by
  ‖t_i − m_j‖; top-k is 1 when its own motion m_i is among the k nearest. Ties
  rank the lower index first (a stable sort; the protocol's unstable argsort
  leaves ties unspecified).
* **Matching Score** (a.k.a. MM-Dist): mean ‖t_i − m_i‖ over the pairs in those
  blocks (the protocol sums the block traces and divides by the pairs seen).
* **FID**: Fréchet distance between Gaussians fitted to M and G (mean, ddof=1
  covariance), via :func:`fideval.frechet.frechet_from_features`: no
  ``scipy.linalg.sqrtm``, no imaginary components.
* **Diversity**: mean ‖m_a − m_b‖ over ``times`` pairs (300), a and b two index
  sets each drawn without replacement (a_i = b_i is possible, as in the
  protocol); needs N > times.
* **MultiModality**: for each text, ``times`` pairs (10) of its repeats, the
  same two index sets for every text (as in the protocol); mean distance over
  texts and pairs; needs num_repeats > times.

Random draws use ``numpy.random.default_rng`` (independent child streams of the
seed for the shuffle, Diversity and MultiModality), not the protocol's global
``np.random`` state, so values match the protocol in distribution, not draw for draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import FidevalError
from ..frechet import FrechetResult, frechet_from_features
from ._distances import as_features, check_same_dim


@dataclass(frozen=True)
class MatchingResult:
    """R-precision (top-1..top-k), Matching Score and how many pairs were used."""

    r_precision: np.ndarray
    matching_score: float
    n_used: int
    n_blocks: int


def _f64(x: Any, name: str, ndim: int = 2, min_rows: int = 1) -> torch.Tensor:
    return as_features(x, name, ndim=ndim, min_rows=min_rows, device="cpu")


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def text_motion_matching(
    text: Any,
    motion: Any,
    *,
    pool: int = 32,
    top_k: int = 3,
    shuffle: bool = False,
    seed: int | np.random.Generator | None = 0,
    names: tuple[str, str] = ("text", "motion"),
) -> MatchingResult:
    """R-precision and Matching Score of paired embeddings (module doc).

    ``pool``: block size of the ranking (a protocol parameter, not a batch size).
    ``shuffle``: permute the pairs (jointly) with ``seed`` before cutting blocks.
    """
    t = _f64(text, names[0])
    m = _f64(motion, names[1])
    check_same_dim(t, m, *names)
    if t.shape[0] != m.shape[0]:
        raise FidevalError(
            f"{names[0]} has {t.shape[0]} rows but {names[1]} has {m.shape[0]}; "
            "text and motion embeddings must be paired row by row"
        )
    if pool < 1 or top_k < 1:
        raise FidevalError(f"pool and top_k must be ≥ 1, got pool={pool}, top_k={top_k}")
    if top_k > pool:
        raise FidevalError(f"top_k={top_k} exceeds the pool of {pool} motions")
    n = t.shape[0]
    n_blocks = n // pool
    if n_blocks == 0:
        raise FidevalError(
            f"{names[0]}: {n} pairs is fewer than one pool of {pool}; "
            f"R-precision needs N ≥ pool (use a smaller pool=, --pool)"
        )
    if shuffle:
        perm = torch.from_numpy(_rng(seed).permutation(n))
        t, m = t[perm], m[perm]
    used = n_blocks * pool
    tb = t[:used].reshape(n_blocks, pool, -1)
    mb = m[:used].reshape(n_blocks, pool, -1)
    # Direct differences (no ‖a‖²+‖b‖²−2aᵀb): exact and never negative.
    dist = torch.cdist(tb, mb, compute_mode="donot_use_mm_for_euclid_dist")  # (B, pool, pool)
    own = torch.diagonal(dist, dim1=1, dim2=2)  # (B, pool)
    idx = torch.arange(pool)
    closer = (dist < own[..., None]).sum(dim=2)
    tied_before = ((dist == own[..., None]) & (idx[None, :] < idx[:, None])[None]).sum(dim=2)
    rank = (closer + tied_before).flatten()  # 0 = nearest
    r_prec = np.array([float((rank < k).double().mean()) for k in range(1, top_k + 1)])
    return MatchingResult(
        r_precision=r_prec, matching_score=float(own.mean()), n_used=used, n_blocks=n_blocks
    )


def r_precision(text: Any, motion: Any, **kwargs: Any) -> np.ndarray:
    """R-precision [top-1, …, top-k] (see :func:`text_motion_matching`)."""
    return text_motion_matching(text, motion, **kwargs).r_precision


def matching_score(text: Any, motion: Any, **kwargs: Any) -> float:
    """Matching Score (MM-Dist) over the complete pools (see :func:`text_motion_matching`)."""
    return text_motion_matching(text, motion, **kwargs).matching_score


def diversity(
    motion: Any,
    *,
    times: int = 300,
    seed: int | np.random.Generator | None = 0,
    name: str = "motion",
) -> float:
    """Mean ‖m_a − m_b‖ over ``times`` random pairs (two index sets without replacement)."""
    x = _f64(motion, name)
    n = x.shape[0]
    if times < 1:
        raise FidevalError(f"diversity times must be ≥ 1, got {times}")
    if n <= times:
        raise FidevalError(
            f"{name}: {n} rows; Diversity with {times} pairs needs more than {times} rows "
            "(two index sets drawn without replacement; lower times=, --diversity-times)"
        )
    rng = _rng(seed)
    a = torch.from_numpy(rng.choice(n, size=times, replace=False))
    b = torch.from_numpy(rng.choice(n, size=times, replace=False))
    return float(torch.linalg.vector_norm(x[a] - x[b], dim=1).mean())


def multimodality(
    mm: Any,
    *,
    times: int = 10,
    seed: int | np.random.Generator | None = 0,
    name: str = "mm",
) -> float:
    """MultiModality of ``mm`` (num_texts, num_repeats, d): mean distance between repeats.

    The same two index sets (each ``times`` repeats without replacement) serve
    every text, as in the protocol.
    """
    x = _f64(mm, name, ndim=3)
    reps = x.shape[1]
    if times < 1:
        raise FidevalError(f"multimodality times must be ≥ 1, got {times}")
    if reps <= times:
        raise FidevalError(
            f"{name}: {reps} repeats per text; MultiModality with {times} pairs needs more "
            f"than {times} (shape {tuple(x.shape)} = (num_texts, num_repeats, d); "
            "lower times=, --mm-times)"
        )
    rng = _rng(seed)
    a = torch.from_numpy(rng.choice(reps, size=times, replace=False))
    b = torch.from_numpy(rng.choice(reps, size=times, replace=False))
    return float(torch.linalg.vector_norm(x[:, a] - x[:, b], dim=2).mean())


def motion_fid_details(
    motion: Any, gt: Any, *, names: tuple[str, str] = ("motion", "gt")
) -> FrechetResult:
    """FID between generated and ground-truth motion embeddings (Gaussian fits, ddof=1),
    by the exact features route, with the kernel's diagnostics and warnings."""
    x = _f64(motion, names[0], min_rows=2)
    g = _f64(gt, names[1], min_rows=2)
    check_same_dim(x, g, *names)
    return frechet_from_features(x, g)


def motion_fid(motion: Any, gt: Any, *, names: tuple[str, str] = ("motion", "gt")) -> float:
    """FID between generated and ground-truth motion embeddings (Gaussian fits, ddof=1)."""
    return motion_fid_details(motion, gt, names=names).value


def motion_suite(
    text: Any,
    motion: Any,
    gt: Any,
    mm: Any | None = None,
    *,
    pool: int = 32,
    top_k: int = 3,
    diversity_times: int = 300,
    mm_times: int = 10,
    shuffle: bool = False,
    seed: int = 0,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """All protocol metrics for one replication.

    Returns ``{"r_precision": [top-1..top-k], "matching_score", "fid",
    "diversity", "warnings"}`` plus ``"multimodality"`` when ``mm`` is given;
    ``warnings`` lists the Fréchet kernel's warnings (e.g. N ≤ d) in words. FID and
    Diversity use all rows of ``motion``; R-precision and Matching Score the
    complete pools. ``seed`` spawns independent streams for the shuffle,
    Diversity and MultiModality, so turning one on does not move the others.
    """
    nm = {"text": "text", "motion": "motion", "gt": "gt", "mm": "mm", **(names or {})}
    if mm is not None and tuple(mm.shape)[-1:] != tuple(motion.shape)[-1:]:
        raise FidevalError(
            f"{nm['mm']}: shape {tuple(mm.shape)} but {nm['motion']} has shape "
            f"{tuple(motion.shape)}; expected (num_texts, num_repeats, d) with the same d"
        )
    s_shuffle, s_div, s_mm = np.random.SeedSequence(seed).spawn(3)
    fid = motion_fid_details(motion, gt, names=(nm["motion"], nm["gt"]))
    match = text_motion_matching(
        text,
        motion,
        pool=pool,
        top_k=top_k,
        shuffle=shuffle,
        seed=np.random.default_rng(s_shuffle),
        names=(nm["text"], nm["motion"]),
    )
    out: dict[str, Any] = {
        "r_precision": [float(v) for v in match.r_precision],
        "matching_score": match.matching_score,
        "fid": fid.value,
        "diversity": diversity(
            motion, times=diversity_times, seed=np.random.default_rng(s_div), name=nm["motion"]
        ),
    }
    out["warnings"] = [f"FID: {w}" for w in fid.warnings]
    if mm is not None:
        out["multimodality"] = multimodality(
            mm, times=mm_times, seed=np.random.default_rng(s_mm), name=nm["mm"]
        )
    return out
