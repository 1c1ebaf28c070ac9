"""From a path to statistics, and from two paths to a Fréchet distance.

A path is one of:

* a statistics file (``.npz`` with ``mu``/``sigma`` or ``m2``/``s2``),
* a 2-D feature array (``.npy`` or one-array ``.npz``, shape (N, d)),
* images: a folder, or a 4-D image array file (handled by :mod:`fideval.features.extract`).

This module only routes; the work is done by the stages it calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import distributed as dist_
from . import streaming
from .data.features import open_features
from .errors import FidevalError
from .frechet import FrechetResult, frechet_details, frechet_from_features
from .io.provenance import check_compatible
from .io.statsfile import StatsRecord, load_stats
from .stats import GaussianStats
from .streaming import resolve_source


@dataclass
class Side:
    """One side of a comparison: its statistics, and its raw features when at hand."""

    record: StatsRecord
    features: np.ndarray | None = None

    @property
    def n(self) -> int | None:
        return self.record.n


def path_kind(path: str | streaming.Source) -> str:
    """``stats``, ``features`` or ``images`` for a path (by content, not by name)."""
    return resolve_source(path).kind


def stats_from_features_file(
    path: str | streaming.Source, chunk_rows: int = 4096
) -> tuple[GaussianStats, dict]:
    """Stream a 2-D feature file (memory-mapped) into statistics; returns (stats, provenance)."""
    stats, meta = streaming.statistics(path, chunk_rows=chunk_rows)
    return stats, meta  # type: ignore[return-value]


def _extractor(options: dict[str, Any]) -> Any:
    """The extractor of the image options: given, or built from name/dims/weights/…"""
    extractor = options.pop("extractor", None)
    spec = {k: options.pop(k, None) for k in ("dims", "weights", "device", "profile")}
    if extractor is None or isinstance(extractor, str):
        from .features.extract import make_extractor

        return make_extractor(
            dims=spec["dims"] or 2048,
            weights=spec["weights"],
            device=spec["device"],
            profile=spec["profile"],
            extractor=extractor or "inception",
        )
    return extractor


def _image_statistics(
    path: str | streaming.Source, sink: Any = None, **image_options: Any
) -> tuple[Any, dict]:
    opts = dict(image_options)
    extractor = _extractor(opts)
    return streaming.statistics(path, extractor, sink=sink, **opts)


#: Features kept in memory per side for the exact features route (float32 bytes);
#: 2 GiB holds 260 000 Inception features. Larger sides use their statistics.
FEATURES_IN_MEMORY_BYTES = 2 << 30


def load_side(path: str | streaming.Source, **image_options: Any) -> Side:
    """Statistics, and the features themselves when they fit in memory, for one path
    (or an already resolved :class:`~fideval.streaming.Source`: nothing is inspected twice).

    Feature files come memory-mapped; image sides keep their features (up to
    :data:`FEATURES_IN_MEMORY_BYTES`, single process) for the exact features route.
    """
    src = resolve_source(path)
    kind, path = src.kind, src
    if kind == "stats":
        return Side(load_stats(src.value))
    if kind == "features":
        stats, meta = stats_from_features_file(path)
        record = StatsRecord(stats.mean, stats.cov, stats.n, meta, src.name, "features")
        return Side(record, open_features(src.value))
    from .features.extract import FeatureSink

    sink = None if dist_.world_size() > 1 else FeatureSink(FEATURES_IN_MEMORY_BYTES)
    stats, meta = _image_statistics(path, sink=sink, **image_options)
    features = None if sink is None else sink.array()
    return Side(StatsRecord(stats.mean, stats.cov, stats.n, meta, src.name, "images"), features)


def stats_from_path(path: str, **image_options: Any) -> tuple[GaussianStats, dict]:
    """Statistics and provenance of any path (features, images, or a statistics file)."""
    kind = path_kind(path)
    if kind == "features":
        return stats_from_features_file(path)
    if kind == "images":
        return _image_statistics(path, **image_options)
    return streaming.statistics(path)  # type: ignore[return-value]


def features_from_path(path: str, *, logits: bool = False, **image_options: Any) -> np.ndarray:
    """Raw features (N, d) of a path, for metrics that need samples (KID, PRDC, IS).

    A 2-D array file is returned memory-mapped; images go through the extractor
    (``logits=True``: the FID Inception's 1008 logits instead of its features). A
    statistics file is an error: these metrics need the samples, not their moments.
    """
    kind = path_kind(path)
    if kind == "stats":
        raise FidevalError(
            f"{path}: a statistics file holds only mean and covariance; this metric needs "
            f"the samples (a 2-D features .npy, an image folder or an image array)"
        )
    if kind == "features":
        return open_features(path)
    from .features.extract import feature_batches, open_stream

    opts = dict(image_options)
    extractor = _extractor(opts)
    stream = open_stream(
        path,
        extractor,
        opts.get("batch_size", 50),
        opts.get("num_workers"),
        opts.get("skip_bad", False),
        opts.get("progress", False),
    )
    parts = [
        (item[1] if logits else item).cpu().numpy()
        for item in feature_batches(stream, extractor, with_logits=logits)
    ]
    return np.concatenate(parts)


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
