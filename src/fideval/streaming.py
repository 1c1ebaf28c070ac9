"""The one path from a source to statistics.

:func:`resolve_source` turns what a user passes — a path (image folder, image array
file, 2-D feature file, statistics file), an array or tensor (2-D features, 4-D images),
statistics, or an iterable / dataset / DataLoader of image batches — into a typed
:class:`Source`, once. :func:`statistics` streams any source through an extractor (for
images) into float64 :class:`~fideval.stats.GaussianStats` (or grouped statistics),
sharded across torch.distributed ranks with one all-reduce, with a progress bar and the
provenance. The CLI and :func:`fideval.fid` come through here; :class:`fideval.FID` and
the Evaluator's reference (:mod:`fideval.train.reference`, which adds resumable
checkpoints, written as statistics files) use the same accumulators, collectives and
provenance.

    >>> import numpy as np
    >>> src = resolve_source(np.arange(12.0).reshape(6, 2))
    >>> src.kind, src.n
    ('features', 6)
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import distributed as dist_
from .data.features import iter_feature_chunks, open_array, open_features
from .data.images import is_image_array_file
from .errors import FidevalError
from .io.provenance import make_provenance
from .io.statsfile import (
    KNOWN_LAYOUTS,
    StatsRecord,
    load_stats,
    not_a_stats_file,
    split_pickle_key,
)
from .stats import GaussianStats, GroupedStats

__all__ = ["Source", "file_fingerprint", "resolve_source", "statistics"]

#: The kinds of source, by what they hold.
KINDS = ("stats", "features", "images")


@dataclass
class Source:
    """A resolved source: its kind (``stats``, ``features`` or ``images``), what it is
    (``form``: folder, array-file, feature-file, stats-file, array, tensor, iterable,
    record), the object itself, and a name for messages."""

    kind: str
    form: str
    value: Any
    name: str
    n: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_path(self) -> bool:
        return self.form in ("folder", "array-file", "feature-file", "stats-file")


def file_fingerprint(path: str, head_bytes: int = 1 << 20) -> str:
    """Cheap content fingerprint: size and SHA-256 of the first ``head_bytes`` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(head_bytes))
    return f"size={os.path.getsize(path)};sha256_head={h.hexdigest()[:16]}"


def _resolve_path(path: str) -> Source:
    base, _ = split_pickle_key(path)
    if base.endswith(".pkl"):  # EDM2 reference statistics (read by a restricted unpickler)
        if not os.path.exists(base):
            raise FidevalError(f"{base}: no such file")
        return Source("stats", "stats-file", path, path)
    if os.path.isdir(path):
        return Source("images", "folder", path, path)
    if not os.path.exists(path):
        raise FidevalError(f"{path}: no such file or folder")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = set(data.files)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise FidevalError(not_a_stats_file(path, exc)) from exc
        if any(m in keys and c in keys for m, c, _ in KNOWN_LAYOUTS):
            return Source("stats", "stats-file", path, path)
    if path.endswith((".npy", ".npz")):
        arr = open_array(path)
        if arr.ndim == 4 or (arr.ndim == 3 and is_image_array_file(path)):
            return Source("images", "array-file", path, path, n=int(arr.shape[0]))
        if arr.ndim == 2:
            return Source("features", "feature-file", path, path, n=int(arr.shape[0]))
        raise FidevalError(
            f"{path}: array of shape {arr.shape}; expected 2-D features (N, d) or 4-D images "
            f"(N, H, W, C)"
        )
    raise FidevalError(
        f"{path}: unsupported input; expected a folder of images, a .npy/.npz array "
        f"(2-D features or 4-D images) or a .npz statistics file"
    )


def resolve_source(x: Any, *, name: str | None = None) -> Source:
    """The typed source of ``x``; a path is inspected once (by content, not by name)."""
    if isinstance(x, Source):
        return x
    if isinstance(x, str | os.PathLike):
        src = _resolve_path(str(x))
        if name:
            src.name = name
        return src
    label = name or type(x).__name__
    if isinstance(x, StatsRecord):
        return Source("stats", "record", x, label, n=x.n, meta=dict(x.meta))
    if isinstance(x, GaussianStats):
        return Source("stats", "record", StatsRecord(x.mean, x.cov, x.n), label, n=x.n)
    if isinstance(x, np.ndarray | torch.Tensor):
        form = "array" if isinstance(x, np.ndarray) else "tensor"
        if x.ndim == 2:
            return Source("features", form, x, label, n=int(x.shape[0]))
        if x.ndim in (3, 4):
            return Source("images", form, x, label, n=int(x.shape[0]))
        raise FidevalError(
            f"{label}: shape {tuple(x.shape)}; expected 2-D features (N, d) or images "
            f"(N, H, W, C) / (N, C, H, W)"
        )
    if isinstance(x, Iterable) or (hasattr(x, "__len__") and hasattr(x, "__getitem__")):
        return Source("images", "iterable", x, label, n=_len(x))
    raise FidevalError(
        f"{label}: expected a path, an array or tensor, statistics, or an iterable of image "
        f"batches, got {type(x).__name__}"
    )


def _len(x: Any) -> int | None:
    try:
        return len(x)
    except TypeError:
        return None


def _feature_chunks(src: Source, chunk_rows: int) -> tuple[Iterator[Any], dict[str, Any]]:
    """This rank's share of a feature source, in chunks, and its provenance."""
    if src.form == "feature-file":
        arr = open_features(src.value)
        meta = {
            "source": os.path.abspath(src.value),
            "source_fingerprint": file_fingerprint(src.value),
            "dtype": str(arr.dtype),
        }
    else:
        arr = src.value
        meta = {"source": src.name, "dtype": str(arr.dtype)}
    start, stop = dist_.shard_range(int(arr.shape[0]))
    part = arr[start:stop]
    if isinstance(part, torch.Tensor):
        return iter(part.split(chunk_rows)), meta
    return iter_feature_chunks(part, chunk_rows), meta


def statistics(
    source: Any,
    extractor: Any | None = None,
    *,
    groups: int | None = None,
    sink: Any | None = None,
    batch_size: int = 50,
    num_workers: int | None = None,
    skip_bad: bool = False,
    progress: bool = False,
    chunk_rows: int = 4096,
) -> tuple[GaussianStats | GroupedStats, dict[str, Any]]:
    """Streaming statistics of a source; returns (statistics, provenance).

    Features stream in chunks; images go through ``extractor`` batch by batch (its
    ``worker_preprocess`` in the DataLoader workers when it has one). ``groups=K`` gives
    :class:`~fideval.stats.GroupedStats` (row i to group i mod K, the estimators' input).
    Under torch.distributed each rank reads its share and one all-reduce merges them; a
    failing rank fails every rank. ``sink`` (a :class:`~fideval.features.extract.FeatureSink`)
    also keeps the features. A statistics source is returned as it is.
    """
    src = resolve_source(source)
    if src.kind == "stats":
        rec = load_stats(src.value) if src.form == "stats-file" else src.value
        if groups is not None:
            raise FidevalError(f"{src.name}: grouped statistics need the samples, not moments")
        return rec.to_stats(), dict(rec.meta)
    stats: GaussianStats | GroupedStats = (
        GroupedStats(groups) if groups is not None else GaussianStats()
    )
    if src.kind == "features":
        chunks, meta = _feature_chunks(src, chunk_rows)
        if groups is not None:
            stats = GroupedStats(groups, offset=dist_.shard_range(src.n or 0)[0])
        meta.update(input_kind="features")
    else:
        if extractor is None:
            raise FidevalError(f"{src.name}: images need an extractor (e.g. 'inception')")
        from .features.extract import feature_batches, open_stream

        stream = open_stream(src.value, extractor, batch_size, num_workers, skip_bad, progress)
        if groups is not None:
            stats = GroupedStats(groups, offset=stream.shard()[0])
        chunks = feature_batches(stream, extractor)
        meta = {}
    what = f"statistics of {src.name}"
    with dist_.collective_guard(what):
        for chunk in chunks:
            stats.update(chunk)
            if sink is not None:
                sink.add(
                    chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.array(chunk))
                )
    if groups is not None:
        stats = dist_.all_reduce_grouped(stats)
    else:
        stats = dist_.all_reduce_stats(stats)
    total = stats.total() if isinstance(stats, GroupedStats) else stats
    if src.kind == "features":
        meta = make_provenance(**meta, dims=total.dim, n=total.n)
    else:
        meta = make_provenance(
            **extractor.provenance(), **stream.description(), input_kind="images", n=total.n
        )
    return stats, meta
