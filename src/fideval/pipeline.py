"""From a path to statistics, and from two paths to a Fréchet distance.

A path is one of:

* a statistics file (``.npz`` with ``mu``/``sigma`` or ``m2``/``s2``),
* a 2-D feature array (``.npy`` or one-array ``.npz``, shape (N, d)),
* images: a folder, or a 4-D image array file (handled by :mod:`fideval.features.extract`).

This module only routes; the work is done by the stages it calls.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import distributed as dist_
from .data.features import iter_feature_chunks, open_array, open_features
from .errors import FidevalError
from .frechet import FrechetResult, frechet_details, frechet_from_features
from .io.provenance import check_compatible, make_provenance
from .io.statsfile import KNOWN_LAYOUTS, StatsRecord, load_stats, not_a_stats_file
from .stats import GaussianStats


@dataclass
class Side:
    """One side of a comparison: its statistics, and its raw features when at hand."""

    record: StatsRecord
    features: np.ndarray | None = None

    @property
    def n(self) -> int | None:
        return self.record.n


def file_fingerprint(path: str, head_bytes: int = 1 << 20) -> str:
    """Cheap content fingerprint: size and SHA-256 of the first ``head_bytes`` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(head_bytes))
    return f"size={os.path.getsize(path)};sha256_head={h.hexdigest()[:16]}"


def path_kind(path: str) -> str:
    """``stats``, ``features`` or ``images`` for a path (by content, not by name)."""
    if os.path.isdir(path):
        return "images"
    if not os.path.exists(path):
        raise FidevalError(f"{path}: no such file or folder")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = set(data.files)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise FidevalError(not_a_stats_file(path, exc)) from exc
        if any(m in keys and c in keys for m, c, _ in KNOWN_LAYOUTS):
            return "stats"
    if path.endswith((".npy", ".npz")):
        arr = open_array(path)
        if arr.ndim == 4:
            return "images"
        if arr.ndim == 3:
            from .data.images import is_image_array_file

            if is_image_array_file(path):  # (N, H, W) integer: grayscale images
                return "images"
        if arr.ndim == 2:
            return "features"
        raise FidevalError(
            f"{path}: array of shape {arr.shape}; expected 2-D features (N, d) or 4-D images "
            f"(N, H, W, C)"
        )
    raise FidevalError(
        f"{path}: unsupported input; expected a folder of images, a .npy/.npz array "
        f"(2-D features or 4-D images) or a .npz statistics file"
    )


def stats_from_features_file(path: str, chunk_rows: int = 4096) -> tuple[GaussianStats, dict]:
    """Stream a 2-D feature file (memory-mapped) into statistics; returns (stats, provenance)."""
    arr = open_features(path)
    stats = GaussianStats(int(arr.shape[1]))
    start, stop = dist_.shard_range(arr.shape[0])  # all rows without a process group
    with dist_.collective_guard(f"statistics of {path}"):
        for chunk in iter_feature_chunks(arr[start:stop], chunk_rows):
            stats.update(chunk)
    stats = dist_.all_reduce_stats(stats)
    meta = make_provenance(
        source=os.path.abspath(path),
        source_fingerprint=file_fingerprint(path),
        input_kind="features",
        dims=int(arr.shape[1]),
        dtype=str(arr.dtype),
        n=stats.n,
    )
    return stats, meta


#: Features kept in memory per side for the exact features route (float32 bytes);
#: 2 GiB holds 260 000 Inception features. Larger sides use their statistics.
FEATURES_IN_MEMORY_BYTES = 2 << 30


def load_side(path: str, **image_options: Any) -> Side:
    """Statistics, and the features themselves when they fit in memory, for one path.

    Feature files come memory-mapped; image sides keep their features (up to
    :data:`FEATURES_IN_MEMORY_BYTES`, single process) for the exact features route.
    """
    kind = path_kind(path)
    if kind == "stats":
        return Side(load_stats(path))
    if kind == "features":
        stats, meta = stats_from_features_file(path)
        record = StatsRecord(stats.mean, stats.cov, stats.n, meta, path, "features")
        return Side(record, open_features(path))
    from .features.extract import FeatureSink

    sink = None if dist_.world_size() > 1 else FeatureSink(FEATURES_IN_MEMORY_BYTES)
    stats, meta = _image_stats(path, sink=sink, **image_options)
    features = None if sink is None else sink.array()
    return Side(StatsRecord(stats.mean, stats.cov, stats.n, meta, path, "images"), features)


def stats_from_path(path: str, **image_options: Any) -> tuple[GaussianStats, dict]:
    """Statistics and provenance for a features file or images (not a stats file)."""
    kind = path_kind(path)
    if kind == "features":
        return stats_from_features_file(path)
    if kind == "images":
        return _image_stats(path, **image_options)
    record = load_stats(path)
    return record.to_stats(), record.meta


def features_from_path(path: str, *, logits: bool = False, **image_options: Any) -> np.ndarray:
    """Raw features (N, d) of a path, for metrics that need samples (KID, PRDC, IS).

    A 2-D array file is returned memory-mapped; images go through the FID Inception
    (``logits=True``: its 1008 logits instead of the pooled features). A statistics file
    is an error: these metrics need the samples, not their moments.
    """
    kind = path_kind(path)
    if kind == "stats":
        raise FidevalError(
            f"{path}: a statistics file holds only mean and covariance; this metric needs "
            f"the samples (a 2-D features .npy, an image folder or an image array)"
        )
    if kind == "features":
        return open_features(path)
    from .features.extract import feature_batches, make_extractor

    opts = dict(image_options)
    extractor = opts.pop("extractor", None) or make_extractor(
        dims=opts.get("dims", 2048),
        weights=opts.get("weights"),
        device=opts.get("device"),
        profile=opts.get("profile", "pytorch-fid"),
    )
    parts = []
    for item in feature_batches(
        path,
        extractor,
        batch_size=opts.get("batch_size", 50),
        num_workers=opts.get("num_workers"),
        skip_bad=opts.get("skip_bad", False),
        progress=opts.get("progress", False),
        with_logits=logits,
    ):
        parts.append((item[1] if logits else item).cpu().numpy())
    return np.concatenate(parts)


def _image_stats(path: str, **image_options: Any) -> tuple[GaussianStats, dict]:
    try:
        from .features.extract import stats_from_images
    except ImportError as exc:  # pragma: no cover - the image stage ships with the package
        raise FidevalError(f"{path}: image input needs fideval's image stage ({exc})") from exc
    return stats_from_images(path, **image_options)


def _in_memory(side: Side) -> bool:
    f = side.features
    return f is not None and f.shape[0] * f.shape[1] * 4 <= FEATURES_IN_MEMORY_BYTES


def compare_sides(a: Side, b: Side, *, force: bool = False) -> FrechetResult:
    """FD between two sides, after the provenance guard.

    When both sides have their features at hand (and they fit in memory), the exact
    features route is used at any N; otherwise the statistics route, with each side's N.
    """
    name_a = a.record.path or "A"
    name_b = b.record.path or "B"
    if a.record.dim != b.record.dim:
        raise FidevalError(
            f"dimension mismatch: {name_a} has d={a.record.dim}, {name_b} has d={b.record.dim}"
        )
    warnings = check_compatible(
        a.record.meta, b.record.meta, name_a=name_a, name_b=name_b, force=force
    )
    if _in_memory(a) and _in_memory(b):
        result = frechet_from_features(np.asarray(a.features), np.asarray(b.features))
    else:
        result = frechet_details(
            a.record.mu, a.record.sigma, b.record.mu, b.record.sigma, n1=a.record.n, n2=b.record.n
        )
    if warnings:
        result = FrechetResult(**{**result.__dict__, "warnings": result.warnings + tuple(warnings)})
    return result
