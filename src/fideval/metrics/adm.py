"""The ADM evaluator's suite: Inception Score, FID, sFID, precision and recall.

What class-conditional ImageNet papers (ADM, DiT, SiT, MAR…) report, computed as
openai/guided-diffusion's ``evaluations/evaluator.py`` computes it from a reference
batch ``REF.npz`` and a sample batch ``SAMPLE.npz``, without TensorFlow:

**Input.** ``arr_0``: uint8 images (N, H, W, 3), streamed in batches through
:func:`fideval.streaming.stream` (never loaded whole:
:meth:`fideval.data.arrayfile.ArrayFile.iter_rows`). Each batch: float32 in [0, 255] →
TF1 legacy bilinear resize to 299×299 (:mod:`fideval.features.tf1_resize`) → (x − 128)/128 → the FID
Inception-v3 (:class:`~fideval.features.inception.FIDInceptionV3`, pytorch-fid's weights
file = the TF graph's weights).

**FID.** pool_3 features f ∈ ℝ²⁰⁴⁸; μ = mean f, Σ = ddof-1 covariance (``np.cov``), in
float64 (:class:`~fideval.stats.GaussianStats`);
FD = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁Σ₂)^½ (:func:`~fideval.frechet.frechet_details`),
in squared feature units.

**sFID.** The output of ``Mixed_6d.branch1x1`` after batch norm and ReLU (TF's
``mixed_6/conv``), channels 0–6, 17×17×7, flattened channels-last: feature index
(h·17 + w)·7 + c, 2023-d; then the same Fréchet distance. (A channels-first flatten
permutes the coordinates: harmless between two computed sides, wrong against a stored
``mu_s``/``sigma_s``.)

**IS.** Logits z = pool_3·Wᵀ **without** the fc bias, p = softmax(z) over all 1008
classes; consecutive splits of 5000 samples in file order (the last may be shorter);
IS = mean over splits s of exp( mean_{x∈s} KL(p(·|x) ‖ p̄_s) ), dimensionless.

**Precision / recall** (Kynkäänniemi et al., k = 3). On pool_3 features: the reference
manifold is built from the reference batch's ``arr_0``, the sample manifold from all
samples. Radius r_i = squared distance from point i to its 3rd nearest other point of
its own set; a point y is inside ball i when ‖y − x_i‖² ≤ r_i. Precision = share of
samples inside at least one reference ball; recall = share of reference points inside at
least one sample ball. Two distance profiles (``manifold=``):

* ``"adm"`` (default, the published numbers): ADM's ``DistanceBlock``. Features are
  rounded to float16 and, per 10 000 × 10 000 block, D = max((‖u‖² − 2uᵀv) + ‖v‖², 0)
  with every TF op's result rounded to float16: squares, the norms' sums, the product
  uᵀv, 2·uᵀv, the subtraction, the addition. Sums (norms, dot products) are accumulated
  exactly (float64) and rounded to float32, then float16; TF's GPU kernels accumulate in
  float32, in an order of their own, so an entry may differ from TF's by one float16 unit
  (TF's result itself depends on the GPU and cuBLAS version). A block with any
  non-finite entry (float16 overflow, ‖u‖² > 65504) is recomputed in float32, as ADM
  does. The radius is ADM's: the 4th smallest entry of the point's row *including* its
  own computed self-distance (0 unless float16 rounding made it larger). Distances and
  radii are float16 values compared as float32 (``dist <= radius``).
* ``"exact"``: float64 from the float32 features. Every decision (k-th neighbour,
  ``≤ radius``) equals the one made with the direct formula Σ(uᵢ − vᵢ)² in float64 with a
  fixed summation tree: the fast expanded form decides wherever its rigorous round-off
  bound allows, and the undecided pairs are recomputed directly. The point itself is
  excluded by index; duplicates count as neighbours at distance 0. Float32/float64
  ports of ADM are reported to differ from its numbers by ≈0.1–0.25 percentage points of
  precision/recall on ImageNet 256 (not measured here: that needs the real weights).

Memory: features of both sets (N × 2048 float32, 8 KiB per image), a d×d accumulator
per statistic, one column block of float16-rounded features held as float64
(10 000 × 2048 × 8 B = 164 MB) and tiles of pairwise values of at most 64 MB: never an
N × N matrix.

Files: if a batch file has ``mu``, its stored ``mu``/``sigma``/``mu_s``/``sigma_s`` are
used for FID and sFID (ADM's rule, either side); otherwise they are computed from its
``arr_0``. IS, precision and recall always use ``arr_0``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._arrays import check_finite_rows
from .._text import shown
from ..data.arrayfile import ArrayFile
from ..data.layout import to_tensor
from ..errors import FidevalError
from ..features.tf1_resize import tf1_resize_bilinear
from ..frechet import frechet_details
from ..stats import GaussianStats
from .inception_score import inception_score

__all__ = [
    "ADM_BLOCK",
    "IMAGE_KEY",
    "IS_SPLIT_SIZE",
    "MANIFOLD_K",
    "MANIFOLD_PROFILES",
    "POOL_DIM",
    "SPATIAL_DIM",
    "ADMInception",
    "adm_inception_score",
    "adm_preprocess",
    "adm_suite",
    "manifold_radii",
    "precision_recall",
    "read_stored_stats",
    "save_adm_stats",
    "spatial_hwc",
]

IMAGE_KEY = "arr_0"
POOL_DIM = 2048
#: sFID channels taken from ``Mixed_6d.branch1x1`` (TF: ``mixed_6/conv``) and its grid.
SPATIAL_CHANNELS = 7
SPATIAL_GRID = 17
SPATIAL_DIM = SPATIAL_GRID * SPATIAL_GRID * SPATIAL_CHANNELS  # 2023
IS_SPLIT_SIZE = 5000
MANIFOLD_K = 3
#: ADM's row and column block of pairwise distances (``ManifoldEstimator``): the unit
#: of its float16-overflow fallback.
ADM_BLOCK = 10000
MANIFOLD_PROFILES = ("adm", "exact")
STAT_KEYS = ("mu", "sigma", "mu_s", "sigma_s")
#: Bytes of one tile of pairwise values (float64) inside a block.
TILE_BYTES = 64 * 2**20
#: Float16 squared norms up to this value cannot overflow ADM's float16 block.
FP16_SAFE_NORM = 16000.0

PREPROCESSING = (
    "uint8 NHWC → float32 in [0, 255] → TF1 legacy bilinear resize to 299×299 "
    "(align_corners=False, no half-pixel centres, no antialias) → (x − 128)/128"
)


# --------------------------------------------------------------------------- network


def adm_preprocess(
    images: np.ndarray | torch.Tensor, device: torch.device | None = None
) -> torch.Tensor:
    """uint8 images (B, H, W, 3) → network input (B, 3, 299, 299) float32 in [−1, 0.9921875].

    x ↦ TF1 bilinear resize (float32, values in [0, 255]) ↦ (x − 128)/128.
    """
    t = to_tensor(images) if isinstance(images, np.ndarray) else images
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
        raise FidevalError(
            f"ADM input: expected uint8 images (B, H, W, 3), got {t.dtype} {tuple(t.shape)}"
        )
    if device is not None:
        t = t.to(device)
    x = t.permute(0, 3, 1, 2).to(torch.float32)
    x = tf1_resize_bilinear(x, 299)
    return x.sub(128.0).div_(128.0)


def spatial_hwc(branch_out: torch.Tensor) -> torch.Tensor:
    """sFID features from ``Mixed_6d.branch1x1``'s output (B, 192, 17, 17): (B, 2023).

    Channels 0–6, flattened channels-last: feature (h·17 + w)·7 + c = out[b, c, h, w].
    """
    if branch_out.ndim != 4 or tuple(branch_out.shape[2:]) != (SPATIAL_GRID, SPATIAL_GRID):
        raise FidevalError(
            f"Mixed_6d.branch1x1 output: expected (B, C, 17, 17), got {tuple(branch_out.shape)}"
        )
    part = branch_out[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1)
    return part.reshape(branch_out.shape[0], SPATIAL_DIM).float().clone()


@contextmanager
def _full_float32(device: torch.device) -> Iterator[None]:
    """IEEE float32 convolutions and products on CUDA (no TF32) inside the block.

    torch lets cuDNN use TF32 (10-bit mantissa) for float32 convolutions by default; the
    ADM numbers are float32 ones. The previous settings are restored on exit.
    """
    if device.type != "cuda":
        yield
        return
    conv, mm = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = conv
        torch.set_float32_matmul_precision(mm)


#: The ADM evaluator's preprocessing, as provenance names it: TF1 legacy bilinear resize
#: to 299 of [0, 255] floats, then (x − 128)/128.
ADM_PROFILE = "adm-tf1-bilinear"


class ADMInception:
    """The ADM evaluator's three outputs of one pass of the FID Inception.

    Wraps an :class:`~fideval.features.inception.InceptionExtractor` (its network is not
    changed: a forward hook on ``Mixed_6d.branch1x1`` reads the sFID features). Calling
    it on uint8 images (B, H, W, 3) gives a dict of float32 tensors on the extractor's
    device: ``"pool"`` (B, 2048), ``"spatial"`` (B, 2023, see :func:`spatial_hwc`) and
    ``"logits"`` (B, 1008) = pool·Wᵀ without the fc bias.
    Use as a context manager (or call :meth:`close`) to remove the hook.
    """

    def __init__(self, extractor: Any) -> None:
        from ..features.inception import InceptionExtractor

        if not isinstance(extractor, InceptionExtractor) or extractor.dims != POOL_DIM:
            raise FidevalError(
                "the ADM suite needs the FID Inception extractor with dims=2048 "
                f"(fideval.features.inception.InceptionExtractor), got {extractor!r}"
            )
        self.extractor = extractor
        self.device = extractor.device
        self._captured: torch.Tensor | None = None
        self._handle = extractor.net.Mixed_6d.branch1x1.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self._captured = spatial_hwc(output)

    id = "inception-v3-fid"
    dims = POOL_DIM
    profile = ADM_PROFILE
    image_size = 299

    @property
    def worker_preprocess(self) -> Any:
        """uint8 (B, H, W, 3) → the network input, in the stream's workers (CPU)."""
        from ..features.base import NamedPreprocess

        return NamedPreprocess(ADM_PROFILE, adm_preprocess)

    def provenance(self) -> dict[str, Any]:
        return {**self.extractor.provenance(), "profile": ADM_PROFILE, "image_size": 299}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs(x)["features"]

    def __call__(self, images: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.outputs(adm_preprocess(images, self.device))
        return {"pool": out["features"], "spatial": out["spatial"], "logits": out["logits"]}

    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three outputs of one pass on preprocessed input (B, 3, 299, 299):
        ``features`` (pool_3), ``spatial`` (sFID) and ``logits`` (no fc bias)."""
        x = x.to(self.device)
        self._captured = None
        # One pass: pool_3 and pool_3·Wᵀ (no bias) from the extractor, the hook's sFID part.
        with _full_float32(self.device):
            pool, logits = self.extractor.features_and_logits(x, bias=False)
        spatial = self._captured
        self._captured = None
        if spatial is None:  # pragma: no cover - the hook always fires
            raise FidevalError("Mixed_6d.branch1x1 did not run; cannot read sFID features")
        return {"features": pool, "spatial": spatial, "logits": logits}

    def close(self) -> None:
        self._handle.remove()

    def __enter__(self) -> ADMInception:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- Inception Score


class _SplitScores:
    """Inception Score over consecutive splits of ``split_size`` rows, fed in batches."""

    def __init__(self, split_size: int = IS_SPLIT_SIZE) -> None:
        self.split_size = int(split_size)
        self.values: list[float] = []
        self._parts: list[torch.Tensor] = []
        self._rows = 0

    def update(self, logits: torch.Tensor) -> None:
        self._parts.append(logits.detach().to("cpu", torch.float32))
        self._rows += int(logits.shape[0])
        while self._rows >= self.split_size:
            buf = torch.cat(self._parts)
            self._score(buf[: self.split_size])
            rest = buf[self.split_size :]
            self._parts, self._rows = ([rest] if rest.shape[0] else []), int(rest.shape[0])

    def _score(self, part: torch.Tensor) -> None:
        self.values.append(inception_score(part, splits=1, name="ADM logits").value)

    def finish(self) -> list[float]:
        if self._rows:
            self._score(torch.cat(self._parts))
            self._parts, self._rows = [], 0
        return self.values


def adm_inception_score(
    logits: np.ndarray | torch.Tensor, split_size: int = IS_SPLIT_SIZE
) -> tuple[float, list[float]]:
    """ADM's Inception Score of logits (N, C) and the per-split scores.

    Splits are rows [0, s), [s, 2s), … in order (s = ``split_size``; the last may be
    shorter); each gives exp(mean KL(p ‖ p̄)) with p = softmax over all C classes
    (:func:`fideval.metrics.inception_score`); the score is their plain mean.
    """
    t = torch.as_tensor(np.asarray(logits) if not isinstance(logits, torch.Tensor) else logits)
    if t.ndim != 2 or t.shape[0] < 1:
        raise FidevalError(f"ADM logits: expected (N ≥ 1, C), got shape {tuple(t.shape)}")
    acc = _SplitScores(split_size)
    acc.update(t)
    values = acc.finish()
    return float(np.mean(values)), values


# --------------------------------------------------------------------------- manifolds


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def _tile_rows(cols: int) -> int:
    return max(1, TILE_BYTES // (8 * max(1, cols)))


def _r16(x: torch.Tensor) -> torch.Tensor:
    """Round to float16 through float32 (what a float32 result cast by TF gives), as float32."""
    return x.to(torch.float32).to(torch.float16).to(torch.float32)


class _Prepared:
    """Per-set values of ADM's distance block: float16 norms and float32 norms."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x  # float32 (n, d)
        self.n16 = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
        self.n32 = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
        for s, e in _blocks(x.shape[0], _tile_rows(x.shape[1])):
            h = x[s:e].to(torch.float16).to(torch.float32)
            # tf.square in float16 (the product of two float16 values is exact in float32,
            # one rounding), tf.reduce_sum accumulated exactly, rounded to float16.
            sq = (h * h).to(torch.float16).to(torch.float64)
            self.n16[s:e] = _r16(sq.sum(dim=1))
            x64 = x[s:e].to(torch.float64)
            self.n32[s:e] = (
                (x64 * x64).to(torch.float32).to(torch.float64).sum(dim=1).to(torch.float32)
            )

    def half64(self, s: int, e: int) -> torch.Tensor:
        return self.x[s:e].to(torch.float16).to(torch.float64)


def _dist16(u: torch.Tensor, v: torch.Tensor, nu: torch.Tensor, nv: torch.Tensor) -> torch.Tensor:
    """ADM's float16 distance block (values are float16 numbers, as float32; may be inf/nan)."""
    dot = _r16(u @ v.mT)
    two = _r16(dot * 2.0)
    t = _r16(nu[:, None] - two)
    return _r16(t + nv[None, :])


def _dist32(u: torch.Tensor, v: torch.Tensor, nu: torch.Tensor, nv: torch.Tensor) -> torch.Tensor:
    """ADM's float32 fallback block: ((‖u‖² − 2uᵀv) + ‖v‖²) in float32."""
    dot = (u @ v.mT).to(torch.float32)
    return (nu[:, None] - dot * 2.0) + nv[None, :]


class _ADMBlocks:
    """Pairwise distance blocks of ADM's ``DistanceBlock`` between two prepared sets."""

    def __init__(self, a: _Prepared, b: _Prepared) -> None:
        self.a, self.b = a, b
        self.fallbacks = 0

    def tiles(self, r0: int, r1: int, c0: int, c1: int) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Tiles (s, e, D) covering block [r0, r1) × [c0, c1): float16 values unless any
        entry of the *whole block* is non-finite, then all float32 (ADM's ``tf.cond``).

        When every float16 norm of the block is ≤ :data:`FP16_SAFE_NORM`, no entry can
        overflow (|uᵀv| ≤ ‖u‖‖v‖, so |D| ≤ 4·16 000·(1 + 2⁻⁹) < 65 504) and tiles are
        streamed; otherwise a first pass over the block decides, as ADM's block does.
        """
        rows = _tile_rows(c1 - c0)
        parts = [(r0 + s, r0 + e) for s, e in _blocks(r1 - r0, rows)]
        nu16, nv16 = self.a.n16, self.b.n16[c0:c1]
        safe = bool(nu16[r0:r1].max() <= FP16_SAFE_NORM) and bool(nv16.max() <= FP16_SAFE_NORM)
        v16 = self.b.half64(c0, c1)
        finite = True
        if not safe:
            for s, e in parts:
                # ADM's order: max(D, 0) first, then the finiteness test (a −inf entry,
                # from an overflowing 2·uᵀv, is clamped to 0 and keeps the block float16)
                d = _dist16(self.a.half64(s, e), v16, nu16[s:e], nv16).clamp_min_(0.0)
                if not bool(torch.isfinite(d).all()):
                    finite = False
                    break
        if finite:
            for s, e in parts:
                d = _dist16(self.a.half64(s, e), v16, nu16[s:e], nv16).clamp_min_(0.0)
                if not bool(torch.isfinite(d).all()):  # pragma: no cover - excluded above
                    raise FidevalError("precision/recall: float16 overflow in a safe block")
                yield s, e, d
            return
        del v16
        self.fallbacks += 1
        v64 = self.b.x[c0:c1].to(torch.float64)
        nv32 = self.b.n32[c0:c1]
        for s, e in parts:
            d = _dist32(self.a.x[s:e].to(torch.float64), v64, self.a.n32[s:e], nv32)
            if not bool(torch.isfinite(d).all()):
                raise FidevalError(
                    f"precision/recall: distances overflow float32 in rows {s}–{e - 1}; "
                    "features of this size cannot be compared"
                )
            yield s, e, d.clamp_min_(0.0)


def _radii_adm(x: torch.Tensor, k: int, block: int) -> tuple[torch.Tensor, int]:
    prep = _Prepared(x)
    blocks = _ADMBlocks(prep, prep)
    n = x.shape[0]
    radii = torch.empty(n, dtype=torch.float32, device=x.device)
    for r0, r1 in _blocks(n, block):
        best: torch.Tensor | None = None
        for c0, c1 in _blocks(n, block):
            kk = min(k + 1, c1 - c0)
            cand = torch.empty(r1 - r0, kk, dtype=torch.float32, device=x.device)
            for s, e, d in blocks.tiles(r0, r1, c0, c1):
                cand[s - r0 : e - r0] = torch.topk(d, kk, dim=1, largest=False).values
            both = cand if best is None else torch.cat([best, cand], dim=1)
            best = torch.topk(both, min(k + 1, both.shape[1]), dim=1, largest=False).values
        assert best is not None
        # np.partition(row, [0..k])[:, k]: the (k+1)-th smallest entry, self included.
        radii[r0:r1] = torch.sort(best, dim=1).values[:, k]
    return radii, blocks.fallbacks


_U64 = 2.0**-53
_TINY64 = float(np.finfo(np.float64).tiny)


def _bound(nu: torch.Tensor, nv: torch.Tensor, d: int) -> torch.Tensor:
    """Bound on |expanded − direct| squared distance in float64 (squared feature units).

    The expanded form nu + nv − 2uᵀv carries ≤ (2γ_d + 4u)(nu + nv) (two norms, a dot
    product bounded by (nu + nv)/2, two additions); the direct formula Σ(uᵢ − vᵢ)²
    ≤ (γ_d + 3u)·2(nu + nv). With γ_d ≈ d·u, 8(d + 4)·u·(nu + nv) covers both with room
    to spare, plus 8d·(smallest normal) for underflow.
    """
    return (nu[:, None] + nv[None, :]).mul_(8.0 * (d + 4) * _U64).add_(8.0 * d * _TINY64)


def _tree_sum(v: torch.Tensor) -> torch.Tensor:
    """Row sums by a fixed pairwise tree: the value depends on the row alone."""
    w = v.shape[1]
    p2 = 1 << max(0, (w - 1).bit_length())
    if p2 != w:
        v = torch.nn.functional.pad(v, (0, p2 - w))
    while v.shape[1] > 1:
        h = v.shape[1] // 2
        v = v[:, :h] + v[:, h:]
    return v[:, 0]


def _direct(a: torch.Tensor, b: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
    """Σ(a[ia] − b[ib])² per pair, float64, fixed summation tree (chunks of pairs)."""
    out = torch.empty(ia.shape[0], dtype=torch.float64, device=a.device)
    step = _tile_rows(a.shape[1])
    for s in range(0, ia.shape[0], step):
        diff = a[ia[s : s + step]].to(torch.float64) - b[ib[s : s + step]].to(torch.float64)
        out[s : s + step] = _tree_sum(diff * diff)
    return out


def _sqnorm64(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    for s, e in _blocks(x.shape[0], _tile_rows(x.shape[1])):
        x64 = x[s:e].to(torch.float64)
        out[s:e] = (x64 * x64).sum(dim=1)
    return out


def _radii_exact(x: torch.Tensor, k: int) -> torch.Tensor:
    n, d = x.shape
    norms = _sqnorm64(x)
    x64_all = None if n * d * 8 > 4 * TILE_BYTES else x.to(torch.float64)
    radii = torch.empty(n, dtype=torch.float64, device=x.device)
    rows = max(1, _tile_rows(n) // 3)
    for s, e in _blocks(n, rows):
        b = e - s
        u = x[s:e].to(torch.float64)
        cols_d = []
        for c0, c1 in _blocks(n, max(1, TILE_BYTES // (8 * d))):
            v = x64_all[c0:c1] if x64_all is not None else x[c0:c1].to(torch.float64)
            cols_d.append(u @ v.mT)
        dist = torch.cat(cols_d, dim=1).mul_(-2.0).add_(norms[s:e, None]).add_(norms[None, :])
        bnd = _bound(norms[s:e], norms, d)
        idx = torch.arange(b, device=x.device)
        dist[idx, idx + s] = math.inf  # the point itself is not its own neighbour
        upper = torch.kthvalue(dist + bnd, k, dim=1).values
        r, c = torch.nonzero(dist.sub_(bnd) <= upper[:, None], as_tuple=True)
        del dist, bnd
        exact = _direct(x, x, r + s, c)
        order = torch.argsort(exact, stable=True)
        order = order[torch.argsort(r[order], stable=True)]
        counts = torch.bincount(r, minlength=b)
        start = counts.cumsum(0) - counts
        radii[s:e] = exact[order][start + (k - 1)]
    return radii


def manifold_radii(
    features: np.ndarray | torch.Tensor,
    *,
    k: int = MANIFOLD_K,
    profile: str = "adm",
    block_size: int = ADM_BLOCK,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Squared k-NN radii of a feature set (N, d), N ≥ k + 1, squared feature units.

    ``profile="adm"``: ADM's float16 distance blocks of ``block_size`` (see the module
    doc), the (k+1)-th smallest entry of each row including the point's own; float32
    result. ``profile="exact"``: the k-th nearest other point by the float64 direct
    formula; float64 result.
    """
    x = _features(features, "features", device)
    _check_k(x.shape[0], k, "features")
    if profile == "adm":
        return _radii_adm(x, k, int(block_size))[0].cpu().numpy()
    if profile == "exact":
        return _radii_exact(x, k).cpu().numpy()
    raise FidevalError(f"manifold profile must be one of {MANIFOLD_PROFILES}, got {profile!r}")


def _in_balls_adm(
    ref: torch.Tensor, r_ref: torch.Tensor, smp: torch.Tensor, r_smp: torch.Tensor, block: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    pr, ps = _Prepared(ref), _Prepared(smp)
    blocks = _ADMBlocks(pr, ps)  # rows: reference, columns: samples (ADM's evaluate_pr)
    ref_in = torch.zeros(ref.shape[0], dtype=torch.bool, device=ref.device)
    smp_in = torch.zeros(smp.shape[0], dtype=torch.bool, device=ref.device)
    for r0, r1 in _blocks(ref.shape[0], block):
        for c0, c1 in _blocks(smp.shape[0], block):
            for s, e, d in blocks.tiles(r0, r1, c0, c1):
                ref_in[s:e] |= (d <= r_smp[None, c0:c1]).any(dim=1)
                smp_in[c0:c1] |= (d <= r_ref[s:e, None]).any(dim=0)
    return ref_in, smp_in, blocks.fallbacks


def _in_balls_exact(
    ref: torch.Tensor, r_ref: torch.Tensor, smp: torch.Tensor, r_smp: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    d = ref.shape[1]
    nr, ns = _sqnorm64(ref), _sqnorm64(smp)
    ref_in = torch.zeros(ref.shape[0], dtype=torch.bool, device=ref.device)
    smp_in = torch.zeros(smp.shape[0], dtype=torch.bool, device=ref.device)
    cols = max(1, TILE_BYTES // (8 * d))
    for c0, c1 in _blocks(smp.shape[0], cols):
        v = smp[c0:c1].to(torch.float64)
        rows = max(1, _tile_rows(c1 - c0) // 3)
        for s, e in _blocks(ref.shape[0], rows):
            dist = (ref[s:e].to(torch.float64) @ v.mT).mul_(-2.0)
            dist.add_(nr[s:e, None]).add_(ns[None, c0:c1])
            bnd = _bound(nr[s:e], ns[c0:c1], d)
            lo, hi = dist - bnd, dist.add_(bnd)
            rs, rr = r_smp[None, c0:c1], r_ref[s:e, None]
            # Sure answers from the bounds; pairs the bounds cannot decide are recomputed.
            ref_in[s:e] |= (hi <= rs).any(dim=1)
            smp_in[c0:c1] |= (hi <= rr).any(dim=0)
            unsure = ((lo <= rs) & (hi > rs)) | ((lo <= rr) & (hi > rr))
            del lo, hi, bnd
            i, j = torch.nonzero(unsure, as_tuple=True)
            if i.numel():
                exact = _direct(ref, smp, i + s, j + c0)
                hit_r = exact <= r_smp[j + c0]
                hit_s = exact <= r_ref[i + s]
                ref_in[i[hit_r] + s] = True
                smp_in[j[hit_s] + c0] = True
    return ref_in, smp_in


def precision_recall(
    ref_features: np.ndarray | torch.Tensor,
    sample_features: np.ndarray | torch.Tensor,
    *,
    k: int = MANIFOLD_K,
    profile: str = "adm",
    block_size: int = ADM_BLOCK,
    device: str | torch.device | None = None,
    ref_radii: np.ndarray | None = None,
) -> dict[str, Any]:
    """Improved precision and recall (k-NN manifolds) of samples against references.

    precision = (1/N) Σ_j [∃i: ‖y_j − x_i‖² ≤ r_i(X)], recall = (1/M) Σ_i [∃j: ‖x_i − y_j‖²
    ≤ r_j(Y)], with r the squared k-NN radii of :func:`manifold_radii` in ``profile``.
    ``ref_radii``: precomputed radii of the references (same profile). Returns
    ``{"precision", "recall", "profile", "k", "float32_fallback_blocks"}``.
    """
    if profile not in MANIFOLD_PROFILES:
        raise FidevalError(f"manifold profile must be one of {MANIFOLD_PROFILES}, got {profile!r}")
    ref = _features(ref_features, "reference features", device)
    smp = _features(sample_features, "sample features", ref.device)
    if ref.shape[1] != smp.shape[1]:
        raise FidevalError(
            f"precision/recall: reference features have d={ref.shape[1]}, samples d={smp.shape[1]}"
        )
    _check_k(ref.shape[0], k, "reference features")
    _check_k(smp.shape[0], k, "sample features")
    fallbacks = 0
    if profile == "adm":
        block = int(block_size)
        if ref_radii is None:
            r_ref, f1 = _radii_adm(ref, k, block)
        else:
            r_ref, f1 = torch.as_tensor(np.asarray(ref_radii, np.float32), device=ref.device), 0
        r_smp, f2 = _radii_adm(smp, k, block)
        ref_in, smp_in, f3 = _in_balls_adm(ref, r_ref, smp, r_smp, block)
        fallbacks = f1 + f2 + f3
    else:
        if ref_radii is None:
            r_ref = _radii_exact(ref, k)
        else:
            r_ref = torch.as_tensor(np.asarray(ref_radii, np.float64), device=ref.device)
        r_smp = _radii_exact(smp, k)
        ref_in, smp_in = _in_balls_exact(ref, r_ref, smp, r_smp)
    return {
        "precision": float(smp_in.double().mean()),
        "recall": float(ref_in.double().mean()),
        "profile": profile,
        "k": int(k),
        "float32_fallback_blocks": fallbacks,
    }


def _features(x: np.ndarray | torch.Tensor, name: str, device: Any) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    if t.ndim != 2 or not (
        t.dtype.is_floating_point or t.dtype in (torch.uint8, torch.int32, torch.int64)
    ):
        raise FidevalError(f"{name}: expected real features (N, d), got {t.dtype} {tuple(t.shape)}")
    if device is not None:
        t = t.to(device)
    if t.device.type == "mps":  # no float64 there: the distance blocks run on the CPU
        t = t.cpu()
    t = t.to(torch.float32)
    check_finite_rows(t, name)
    return t.contiguous()


def _check_k(n: int, k: int, name: str) -> None:
    if k < 1:
        raise FidevalError(f"k must be ≥ 1, got {k}")
    if n < k + 1:
        raise FidevalError(
            f"{name}: {n} points; a k={k} nearest-neighbour manifold needs at least {k + 1}"
        )


# --------------------------------------------------------------------------- files


def read_stored_stats(source: Any) -> dict[str, np.ndarray] | None:
    """The stored ``mu``/``sigma``/``mu_s``/``sigma_s`` of a batch file (a path or an open
    :class:`~fideval.data.arrayfile.ArrayFile`), or None without ``mu``.

    Shapes are checked: mu (2048,), sigma (2048, 2048), mu_s (2023,), sigma_s (2023, 2023).
    An ``n`` (number of images, written by :func:`save_adm_stats`; ADM's files have none)
    is returned too: the Fréchet kernel then knows each covariance's rank (≤ n − 1).
    """
    af = source if isinstance(source, ArrayFile) else ArrayFile(source)
    p = shown(af.path)
    keys = set(af.keys)
    if "mu" not in keys:
        return None
    missing = [k for k in STAT_KEYS if k not in keys]
    if missing:
        raise FidevalError(
            f"{p}: has 'mu' but not {', '.join(repr(m) for m in missing)}; a batch file with "
            "stored statistics needs all of mu, sigma, mu_s, sigma_s"
        )
    want = {
        "mu": (POOL_DIM,),
        "sigma": (POOL_DIM, POOL_DIM),
        "mu_s": (SPATIAL_DIM,),
        "sigma_s": (SPATIAL_DIM, SPATIAL_DIM),
    }
    out = {}
    for key, shape in want.items():
        if af.dtype(key).kind not in "fiu" or af.shape(key) != shape:
            raise FidevalError(
                f"{p}: {key} has {af.dtype(key)} {af.shape(key)}; "
                f"expected a real array of shape {shape}"
            )
        arr = af.array(key)
        if not np.isfinite(arr).all():
            raise FidevalError(f"{p}: {key} holds NaN/Inf; expected finite statistics")
        out[key] = arr
    if "n" in keys:
        n = af.array("n")
        if n.shape != () or n.dtype.kind not in "iu" or int(n) < 1:
            raise FidevalError(f"{p}: n is {n.dtype} {n.shape}; expected a whole number ≥ 1")
        out["n"] = n
    return out


def save_adm_stats(
    path: str | Path,
    stats: dict[str, np.ndarray],
    *,
    n: int | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write ``mu``, ``sigma``, ``mu_s``, ``sigma_s`` (float64) in ADM's layout, atomically.

    Also ``n`` (number of images, when known) and ``meta`` (the provenance as a JSON
    string, the key :func:`fideval.load_stats` reads and guards on); ADM's evaluator reads
    only the four statistics.
    """
    from ..io.atomic import atomic_write, check_writable

    target = check_writable(path)
    arrays: dict[str, np.ndarray] = {k: np.asarray(stats[k], dtype=np.float64) for k in STAT_KEYS}
    if n is not None:
        arrays["n"] = np.asarray(int(n), dtype=np.int64)
    if provenance is not None:
        arrays["meta"] = np.asarray(json.dumps(provenance, default=str))
    with atomic_write(target, "wb") as fh:
        np.savez(fh, **arrays)
    return target


def _check_images(af: ArrayFile) -> None:
    where = f"{shown(af.path)}: {IMAGE_KEY}"
    s, dtype = af.shape(IMAGE_KEY), af.dtype(IMAGE_KEY)
    if dtype != np.uint8 or len(s) != 4 or s[3] != 3 or min(s[1:3], default=0) < 1:
        raise FidevalError(
            f"{where}: {dtype} {s}; expected uint8 images (N, H, W, 3) "
            "(NHWC RGB, as the ADM sampling scripts save them)"
        )
    if s[0] < 1:
        raise FidevalError(f"{where}: no images (shape {s})")


class _Side:
    """What one batch file contributes: pool features, statistics, IS splits.

    The file is opened once (:class:`~fideval.data.arrayfile.ArrayFile`); its images go
    through :func:`fideval.streaming.stream` like every other source, with the ADM
    network's three outputs fed to their consumers in one pass.
    """

    def __init__(self, path: Path, role: str) -> None:
        self.path = path
        self.role = role
        self.af = ArrayFile(path)
        if not self.af.is_npz or not self.af.keys:
            raise FidevalError(
                f"{shown(path)}: not an .npz file (a zip archive without .npy members)"
            )
        self.stored = read_stored_stats(self.af)
        self.has_images = IMAGE_KEY in self.af.keys
        self.shape: tuple[int, ...] | None = None
        if self.has_images:
            _check_images(self.af)
            self.shape = self.af.shape(IMAGE_KEY)
        self.pool: np.ndarray | None = None
        self.stats: dict[str, np.ndarray] | None = self.stored
        self.n_stats: int | None = None
        if self.stored is not None and "n" in self.stored:
            self.n_stats = int(self.stored["n"])
        self.is_values: list[float] | None = None

    @property
    def n_images(self) -> int:
        return 0 if self.shape is None else int(self.shape[0])

    def extract(self, net: ADMInception, batch_size: int, *, scores: bool, progress: bool) -> None:
        from ..data.images import ImageStream
        from ..streaming import FeatureBank, stream

        assert self.shape is not None
        need_stats = self.stored is None
        pool = FeatureBank(1 << 62, "error")
        gp = GaussianStats(POOL_DIM) if need_stats else None
        gs = GaussianStats(SPATIAL_DIM) if need_stats else None
        split = _SplitScores() if scores else None
        images = ImageStream(self.af, image_key=IMAGE_KEY, desc=f"{self.role} {self.path.name}")
        stream(
            images,
            net,
            into=[pool] + ([gp] if gp is not None else []),
            outputs_into={
                "spatial": [gs] if gs is not None else [],
                "logits": [split] if split is not None else [],
            },
            batch_size=batch_size,
            num_workers=0,
            progress=progress,
        )
        self.pool = pool.array()
        if gp is not None and gs is not None:
            self.stats = {"mu": gp.mean, "sigma": gp.cov, "mu_s": gs.mean, "sigma_s": gs.cov}
            self.n_stats = self.n_images
        if split is not None:
            self.is_values = split.finish()

    def describe(self) -> dict[str, Any]:
        if self.stored is not None:
            source = "stored in the file (mu, sigma, mu_s, sigma_s)"
        else:
            source = f"computed from {IMAGE_KEY} ({self.n_images} images)"
        return {
            "path": str(self.path),
            IMAGE_KEY: None if self.shape is None else list(self.shape),
            "statistics": source,
        }


def _progress(total: int, desc: str, on: bool) -> Any:
    if not on:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False)


def adm_suite(
    ref_path: str | Path,
    sample_path: str | Path,
    *,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 64,
    manifold: str = "adm",
    save_stats: str | Path | None = None,
    extractor: Any | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The ADM evaluator's five numbers for a reference and a sample batch ``.npz``.

    Returns a dict: ``inception_score`` (dimensionless), ``fid`` and ``sfid`` (squared
    feature units), ``precision`` and ``recall`` (fractions in [0, 1]; None when the
    reference file has no ``arr_0``), ``N`` (sample images), ``M`` (reference images in
    ``arr_0``; 0 without it), ``is_splits`` (per-split scores), ``fid_details``/``sfid_details``
    (:class:`~fideval.frechet.FrechetResult` dicts), ``provenance`` and ``warnings``.

    ``weights``: the FID Inception weights file (pytorch-fid's; default: looked up by
    :func:`fideval.io.weights.resolve_weights`). ``manifold``: ``"adm"`` (ADM's float16
    distances, the default) or ``"exact"``. ``save_stats``: write the sample's
    statistics (ADM layout, :func:`save_adm_stats`). ``extractor``: a prebuilt
    :class:`~fideval.features.inception.InceptionExtractor` (dims 2048), instead of
    ``weights``/``device``. See the module doc for every definition.
    """
    from ..features.registry import extractor as build_extractor

    if manifold not in MANIFOLD_PROFILES:
        raise FidevalError(f"manifold must be one of {MANIFOLD_PROFILES}, got {manifold!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise FidevalError(f"batch_size must be a whole number ≥ 1, got {batch_size!r}")
    notes: list[str] = []
    # Everything that can fail cheaply fails before the first image: both files' keys,
    # headers and stored statistics, the output path, the weights.
    ref = _Side(Path(ref_path), "reference")
    smp = _Side(Path(sample_path), "sample")
    if not smp.has_images:
        raise FidevalError(
            f"{smp.path}: no {IMAGE_KEY!r}; the sample batch needs its images "
            "(the Inception Score and precision/recall are computed from them)"
        )
    if not ref.has_images and ref.stored is None:
        raise FidevalError(
            f"{ref.path}: neither {IMAGE_KEY!r} nor stored statistics (mu, sigma, mu_s, sigma_s)"
        )
    for side in (ref, smp):
        if side.has_images and side.n_images < MANIFOLD_K + 1:
            raise FidevalError(
                f"{side.path}: {IMAGE_KEY} holds {side.n_images} images; precision/recall "
                f"(k={MANIFOLD_K} manifolds) need at least {MANIFOLD_K + 1}"
            )
    if not ref.has_images:
        notes.append(
            f"{ref.path}: no {IMAGE_KEY!r}; precision and recall need the reference images "
            "and are not computed (FID and sFID use the stored statistics)"
        )
    if smp.stored is not None:
        notes.append(
            f"{smp.path}: FID and sFID use the statistics stored in the sample file "
            f"(mu, sigma, mu_s, sigma_s), as the ADM evaluator does, not its {IMAGE_KEY}"
        )
    if save_stats is not None:
        from ..io.atomic import check_writable

        check_writable(save_stats)
    if extractor is None:
        # uncompiled: ADM reads Mixed_6d through a forward hook
        extractor = build_extractor(
            "inception", dims=POOL_DIM, weights=weights, device=device, compile=False
        )
    t0 = time.perf_counter()
    with ADMInception(extractor) as net:
        if ref.has_images:
            ref.extract(net, batch_size, scores=False, progress=progress)
        smp.extract(net, batch_size, scores=True, progress=progress)
    t_net = time.perf_counter() - t0
    assert ref.stats is not None and smp.stats is not None and smp.is_values is not None
    fid = frechet_details(
        smp.stats["mu"],
        smp.stats["sigma"],
        ref.stats["mu"],
        ref.stats["sigma"],
        n1=smp.n_stats,
        n2=ref.n_stats,
    )
    sfid = frechet_details(
        smp.stats["mu_s"],
        smp.stats["sigma_s"],
        ref.stats["mu_s"],
        ref.stats["sigma_s"],
        n1=smp.n_stats,
        n2=ref.n_stats,
    )
    pr: dict[str, Any] | None = None
    t1 = time.perf_counter()
    if ref.pool is not None and smp.pool is not None:
        pr = precision_recall(ref.pool, smp.pool, profile=manifold, device=extractor.device)
        if pr["float32_fallback_blocks"]:
            notes.append(
                f"precision/recall: {pr['float32_fallback_blocks']} distance block(s) overflowed "
                "float16 and were computed in float32, as the ADM evaluator does"
            )
    t_pr = time.perf_counter() - t1
    is_value = float(np.mean(smp.is_values))
    provenance = {
        "suite": "adm (openai/guided-diffusion evaluations/evaluator.py)",
        "extractor": extractor.id,
        "weights_file": Path(extractor.weights_path).name,
        "weights_sha256": extractor.weights_sha256,
        "weights_official": extractor.weights_official,
        "preprocessing": PREPROCESSING,
        "fid_features": "pool_3 (2048)",
        "sfid_features": "Mixed_6d.branch1x1 (TF mixed_6/conv) channels 0–6, 17×17×7 "
        "flattened channels-last, index (h·17 + w)·7 + c (2023)",
        "inception_score": {
            "logits": "pool_3·Wᵀ without the fc bias, softmax over 1008 classes",
            "split_size": IS_SPLIT_SIZE,
            "splits": len(smp.is_values),
        },
        "manifold": {
            "profile": manifold,
            "k": MANIFOLD_K,
            "distances": "float16 (ADM's DistanceBlock, blocks of 10000)"
            if manifold == "adm"
            else "float64, decisions of the direct formula",
        },
        "reference": ref.describe(),
        "sample": smp.describe(),
        "device": str(extractor.device),
        "batch_size": batch_size,
        "seconds": {"network": round(t_net, 3), "precision_recall": round(t_pr, 3)},
    }
    all_warnings = (
        notes + [f"FID: {w}" for w in fid.warnings] + [f"sFID: {w}" for w in sfid.warnings]
    )
    if save_stats is not None:
        save_adm_stats(
            save_stats,
            smp.stats,
            n=smp.n_stats,
            provenance={
                **{k: provenance[k] for k in ("extractor", "weights_sha256", "preprocessing")},
                "dims": POOL_DIM,
                "profile": ADM_PROFILE,
                "image_size": 299,
                "source": provenance["sample"],
                "n": smp.n_stats,
            },
        )
    return {
        "inception_score": is_value,
        "fid": fid.value,
        "sfid": sfid.value,
        "precision": None if pr is None else pr["precision"],
        "recall": None if pr is None else pr["recall"],
        "N": smp.n_images,
        "M": ref.n_images,
        "is_splits": list(smp.is_values),
        "fid_details": fid.to_dict(),
        "sfid_details": sfid.to_dict(),
        "provenance": provenance,
        "warnings": all_warnings,
    }
