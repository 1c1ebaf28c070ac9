"""The one path from a source to every metric.

1. :func:`resolve_source` turns what a user passes — a path (image folder, image array
   file, 2-D feature file, statistics file or EDM2 pickle), an array or tensor (2-D
   features, 3/4-D images), statistics, a dataset, or an iterable of image batches —
   into a typed :class:`Source`, **once**. A path is opened once and the opened object
   (the statistics record, the memory-mapped features, the listed image stream) travels
   in the source; nothing downstream opens the path again.
2. :func:`stream` runs a source through an extractor (for images) into any set of
   consumers in one pass: :class:`~fideval.stats.GaussianStats`,
   :class:`~fideval.stats.GroupedStats`, a bounded :class:`FeatureBank`, and banks of
   logits. It shards across torch.distributed ranks and returns the provenance.
3. :func:`collect` is what every metric calls: one pass gives a :class:`Side` holding
   the statistics, and the features and logits when asked for.

The CLI, :func:`fideval.fid`, :func:`fideval.evaluate`, :class:`fideval.FID`, the
Evaluator's reference, and the KID / PRDC / IS / CMMD subcommands all come through here.

    >>> import numpy as np
    >>> src = resolve_source(np.arange(12.0).reshape(6, 2))
    >>> src.kind, src.n
    ('features', 6)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed as dist_
from ._arrays import check_finite_rows
from ._text import shown
from .data.arrayfile import ArrayFile
from .data.features import check_features
from .data.images import ARRAY_EXTENSIONS, ImageStream, image_array_key
from .errors import FidevalError
from .io.provenance import make_provenance
from .io.statsfile import (
    KNOWN_LAYOUTS,
    StatsRecord,
    load_stats,
    split_pickle_key,
    stats_from_array_file,
)
from .stats import GaussianStats, GroupedStats

__all__ = [
    "FeatureBank",
    "Lazy",
    "Side",
    "Source",
    "collect",
    "resolve_source",
    "statistics",
    "stream",
]

#: The kinds of source, by what they hold.
KINDS = ("stats", "features", "images")

#: Features kept in memory per side (float32 bytes) by default: for the exact
#: features route of FID, and the samples of KID / PRDC / CMMD. 2 GiB holds 260 000
#: Inception features. A feature *file* is memory-mapped and never counts against it.
FEATURES_IN_MEMORY_BYTES = 2 << 30


@dataclass
class Source:
    """A resolved source.

    ``kind``: ``stats``, ``features`` or ``images``; ``form``: what it came from
    (folder, array-file, feature-file, stats-file, array, tensor, dataset, iterable,
    record); ``value``: the opened object — a :class:`~fideval.io.statsfile.StatsRecord`,
    a 2-D feature array or tensor (memory-mapped for a file), or an
    :class:`~fideval.data.images.ImageStream`; ``name``: for messages (escaped).
    """

    kind: str
    form: str
    value: Any
    name: str
    n: int | None = None
    path: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_path(self) -> bool:
        return self.path is not None

    @property
    def dim(self) -> int | None:
        """The feature dimension when known before extraction (statistics, features)."""
        if self.kind == "stats":
            return int(self.value.dim)
        if self.kind == "features":
            return int(self.value.shape[1])
        return None

    def fingerprint(self, content: bool = False) -> str | None:
        """What identifies the samples, covering all of them (see
        :meth:`~fideval.data.images.ImageStream.fingerprint`)."""
        if self.kind == "images":
            return self.value.fingerprint(content)
        if self.path is not None:
            st = os.stat(split_pickle_key(self.path)[0])
            return f"size+mtime:{st.st_size}:{st.st_mtime_ns}"
        return None


# --------------------------------------------------------------------------- resolve


def needs_samples(name: str, what: str = "this metric") -> FidevalError:
    """The one error for statistics given where samples are needed."""
    return FidevalError(
        f"{name}: a statistics file holds only mean and covariance; {what} needs the "
        "samples (a 2-D features .npy, an image folder or an image array)"
    )


def _resolve_path(path: str) -> Source:
    name = shown(path)
    base, _ = split_pickle_key(path)
    if base.endswith(".pkl"):  # EDM2 reference statistics (a restricted unpickler)
        if not os.path.exists(base):
            raise FidevalError(f"{shown(base)}: no such file")
        rec = load_stats(path)
        return Source("stats", "stats-file", rec, name, rec.n, path, dict(rec.meta))
    p = Path(path)
    if p.is_dir():
        if p.suffix.lower() in ARRAY_EXTENSIONS:
            raise FidevalError(
                f"{name}: is a folder, not a {p.suffix} file; rename it to use it as an image "
                "folder"
            )
        img = ImageStream(p)
        return Source("images", "folder", img, name, img.n_total, path)
    try:
        os.stat(p)
    except FileNotFoundError:
        raise FidevalError(f"{name}: no such file or folder") from None
    except OSError as exc:  # a symlink loop, a permission problem on the way
        raise FidevalError(f"{name}: {exc.strerror or exc}") from None
    if p.suffix.lower() not in ARRAY_EXTENSIONS:
        raise FidevalError(
            f"{name}: unsupported input; expected a folder of images, a .npy/.npz array "
            f"(2-D features or 4-D images) or a .npz statistics file"
        )
    af = ArrayFile(p)
    keys = set(af.keys)
    pair = any(m in keys and c in keys for m, c, _ in KNOWN_LAYOUTS)
    partial = any(m in keys or c in keys for m, c, _ in KNOWN_LAYOUTS)
    if pair or (partial and image_array_key(af) is None):
        rec = stats_from_array_file(af)  # the same open file
        af.close()
        return Source("stats", "stats-file", rec, name, rec.n, path, dict(rec.meta))
    key = image_array_key(af)
    if key is not None:
        img = ImageStream(af, image_key=key)
        return Source("images", "array-file", img, name, img.n_total, path)
    two_d = [k for k in af.keys if len(af.shape(k)) == 2]
    if len(af.keys) == 1 or len(two_d) == 1:
        k = af.keys[0] if len(af.keys) == 1 else two_d[0]
        arr = af.array(k)
        if arr.ndim != 2:
            raise FidevalError(
                f"{name}: array of shape {arr.shape}; expected 2-D features (N, d) or images "
                f"(N, H, W, C)"
            )
        check_features(arr, name)
        return Source("features", "feature-file", arr, name, int(arr.shape[0]), path)
    shapes = {k: af.shape(k) for k in af.keys}
    raise FidevalError(
        f"{name}: cannot tell what this .npz holds (arrays {shapes}); expected statistics "
        "('mu' and 'sigma'), images ('arr_0' N×H×W×C) or one 2-D feature array"
    )


def resolve_source(x: Any, *, name: str | None = None) -> Source:
    """The typed source of ``x``; a path is opened once (classified by content)."""
    if isinstance(x, Source):
        return x
    if isinstance(x, str | os.PathLike):
        src = _resolve_path(os.fspath(x))
        if name:
            src.name = shown(name)
        return src
    label = shown(name) if name else type(x).__name__
    if isinstance(x, StatsRecord):
        return Source("stats", "record", x, label, x.n, None, dict(x.meta))
    if isinstance(x, ImageStream):
        return Source("images", x.description()["source_kind"], x, shown(x.label), x.n_total)
    if isinstance(x, GaussianStats):
        return Source("stats", "record", StatsRecord(x.mean, x.cov, x.n), label, x.n)
    if isinstance(x, np.ndarray | torch.Tensor):
        form = "array" if isinstance(x, np.ndarray) else "tensor"
        if x.ndim == 2:
            if isinstance(x, np.ndarray) and not x.dtype.isnative:
                x = x.astype(x.dtype.newbyteorder("="))
            return Source("features", form, check_features(x, label), label, int(x.shape[0]))
        if x.ndim in (3, 4):
            img = ImageStream(x)
            return Source("images", form, img, label, int(x.shape[0]))
        raise FidevalError(
            f"{label}: shape {tuple(x.shape)}; expected 2-D features (N, d) or images "
            f"(N, H, W, C) / (N, C, H, W)"
        )
    if isinstance(x, Iterable) or (hasattr(x, "__len__") and hasattr(x, "__getitem__")):
        img = ImageStream(x)
        return Source("images", img.description()["source_kind"], img, label, img.n_total)
    raise FidevalError(
        f"{label}: expected a path, an array or tensor, statistics, a dataset or an "
        f"iterable of image batches, got {type(x).__name__}"
    )


# --------------------------------------------------------------------------- consumers


class FeatureBank:
    """Keeps feature (or logit) batches on the CPU up to ``max_bytes``.

    ``on_overflow="drop"``: past the budget the bank forgets what it holds and
    :meth:`array` gives None (FID then uses the statistics alone);
    ``"error"``: past the budget it raises, naming the cap (KID, PRDC and IS need
    the samples themselves).
    """

    def __init__(
        self,
        max_bytes: int = FEATURES_IN_MEMORY_BYTES,
        on_overflow: str = "drop",
        what: str = "features",
    ) -> None:
        self.max_bytes = int(max_bytes)
        self.on_overflow = on_overflow
        self.what = what
        self._parts: list[torch.Tensor] = []
        self._bytes = 0
        self.overflowed = False

    def update(self, batch: torch.Tensor) -> None:
        if self.overflowed:
            return
        self._bytes += batch.numel() * batch.element_size()
        if self._bytes > self.max_bytes:
            if self.on_overflow == "error":
                raise FidevalError(
                    f"the {self.what} exceed the in-memory cap of {self.max_bytes / 2**30:.2f} GiB "
                    f"({self._bytes / 2**30:.2f} GiB so far); extract them to a file first "
                    "(`fideval features SRC -o F.npy`), which is memory-mapped, or raise the cap"
                )
            self.overflowed, self._parts = True, []
            return
        self._parts.append(batch.detach().to("cpu", copy=True))

    def array(self) -> np.ndarray | None:
        """The rows as one (N, d) numpy array, or None past the budget or when empty."""
        if self.overflowed or not self._parts:
            return None
        return torch.cat(self._parts).numpy()


# --------------------------------------------------------------------------- the stream


def _feature_chunks(src: Source, chunk_rows: int, skip: int) -> Iterator[Any]:
    start, stop = dist_.shard_range(int(src.value.shape[0]))
    part = src.value[min(stop, start + skip) : stop]
    if isinstance(part, torch.Tensor):
        yield from part.split(chunk_rows)
        return
    for lo in range(0, part.shape[0], chunk_rows):
        chunk = np.array(part[lo : lo + chunk_rows])  # a copy out of the memory map
        if chunk.dtype.kind in "iub":
            chunk = chunk.astype(np.float64)
        yield torch.from_numpy(chunk)


def _features_provenance(src: Source) -> dict[str, Any]:
    meta: dict[str, Any] = {"source": src.name, "dtype": str(src.value.dtype)}
    if src.path is not None:
        meta["source"] = os.path.abspath(src.path)
        meta["source_fingerprint"] = src.fingerprint()
    return meta


def _image_outputs(
    extractor: Any, images: torch.Tensor, preprocessed: bool, logits: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    if logits:
        if not (preprocessed and hasattr(extractor, "features_and_logits")):
            raise FidevalError(
                f"extractor {getattr(extractor, 'id', type(extractor).__name__)} has no class "
                "logits; the Inception Score needs the FID Inception (extractor 'inception')"
            )
        return extractor.features_and_logits(images)
    feats = extractor.features(images) if preprocessed else extractor(images)
    return feats, None


def _named_errors(batches: Iterator[Any], name: str) -> Iterator[Any]:
    """The batches, with the source named in any error raised while reading them."""
    try:
        yield from batches
    except FidevalError as exc:
        if name in str(exc):
            raise
        raise type(exc)(f"{name}: {exc}") from exc
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def stream(
    source: Any,
    extractor: Any | None = None,
    *,
    into: Sequence[Any] = (),
    logits_into: Sequence[Any] = (),
    batch_size: int = 50,
    num_workers: int | None = None,
    skip_bad: bool = False,
    progress: bool = False,
    chunk_rows: int = 4096,
    skip: int = 0,
    after_batch: Callable[[int], None] | None = None,
    outputs_into: dict[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Stream ``source`` once into every consumer; returns the provenance.

    Each consumer has ``update(batch)``: ``into`` receives feature batches (B, d),
    ``logits_into`` the extractor's class logits (images through the FID Inception
    only). Features stream in chunks of ``chunk_rows``; images go through
    ``extractor`` batch by batch (its ``worker_preprocess`` in the DataLoader workers
    when it has one). Under torch.distributed each rank reads its share (the caller
    merges); a failing rank fails every rank. ``skip`` rows of this rank's share are
    passed over (a resumed computation); ``after_batch(rows)`` runs after each batch
    reached every consumer. ``outputs_into`` maps the names of an extractor's other
    outputs (its ``outputs(x)`` dict, e.g. the ADM network's ``spatial`` and ``logits``)
    to their consumers. NaN/Inf features raise, naming the source and the batch.
    """
    src = resolve_source(source)
    if src.kind == "stats":
        raise needs_samples(src.name, "this")
    if src.kind == "features":
        if logits_into:
            raise FidevalError(
                f"{src.name}: features have no class logits; the Inception Score needs images "
                "or a logits file"
            )
        batches: Iterator[Any] = _feature_chunks(src, chunk_rows, skip)
        images = None
    else:
        if extractor is None:
            raise FidevalError(f"{src.name}: images need an extractor (e.g. 'inception')")
        images = src.value
        fast = getattr(extractor, "worker_preprocess", None)
        fast = fast if fast is not None and hasattr(extractor, "features") else None
        images.configure(
            preprocess=fast,
            batch_size=batch_size,
            num_workers=num_workers,
            skip_bad=skip_bad,
            progress=progress,
        )
        images.skip = skip
        prepare = getattr(extractor, "prepare", None)
        if prepare is not None:  # compile="auto" decides from the job's size
            total = images.n_total
            prepare(None if total is None else max(0, total - skip))
        batches = iter(images)
    row = 0
    if images is not None:
        batches = _named_errors(batches, src.name)
    try:
        with dist_.collective_guard(f"reading {src.name}"):
            for b, batch in enumerate(batches):
                logits = None
                extra: dict[str, Any] = {}
                if images is not None and outputs_into:
                    extra = extractor.outputs(batch)
                    batch = extra["features"]
                elif images is not None:
                    batch, logits = _image_outputs(
                        extractor, batch, fast is not None, bool(logits_into)
                    )
                where = f"{src.name}: features batch {b}"
                try:
                    check_finite_rows(batch, where, row_offset=row)
                except FidevalError as exc:
                    if images is None:
                        raise
                    ids = ", ".join(map(str, images.last_ids[:5]))
                    raise type(exc)(f"{exc}; the batch holds images {ids} ...") from None
                for consumer in into:
                    consumer.update(batch)
                for consumer in logits_into:
                    consumer.update(logits)
                for key, consumers in (outputs_into or {}).items():
                    for consumer in consumers:
                        consumer.update(extra[key])
                row += int(batch.shape[0])
                if after_batch is not None:
                    after_batch(row)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # a generator's progress bar is closed before any error is printed
    if images is None:
        return make_provenance(
            **_features_provenance(src), input_kind="features", dims=src.dim, n=src.n
        )
    from .features.base import provenance_of

    return make_provenance(**provenance_of(extractor), **images.description(), input_kind="images")


def statistics(
    source: Any,
    extractor: Any | None = None,
    *,
    groups: int | None = None,
    **options: Any,
) -> tuple[GaussianStats | GroupedStats | StatsRecord, dict[str, Any]]:
    """Float64 statistics of a source and their provenance: one :func:`stream` into
    :class:`~fideval.stats.GaussianStats` (or ``groups=K`` grouped statistics, row i
    to group i mod K), merged across ranks. A statistics source is returned as it is:
    as :class:`~fideval.stats.GaussianStats` when its N is known, else as its
    :class:`~fideval.io.statsfile.StatsRecord` (``mu``, ``sigma``, ``n=None``)."""
    src = resolve_source(source)
    if src.kind == "stats":
        if groups is not None:
            raise FidevalError(f"{src.name}: grouped statistics need the samples, not moments")
        rec = src.value
        # A pytorch-fid file has no N: its record (mu, sigma, n=None) is returned as it is.
        return (rec.to_stats() if rec.n is not None else rec), dict(rec.meta)
    offset = 0
    if groups is not None:
        total = src.n if src.n is not None else 0
        offset = dist_.shard_range(total)[0]
    stats: GaussianStats | GroupedStats = (
        GroupedStats(groups, offset=offset) if groups is not None else GaussianStats()
    )
    meta = stream(src, extractor, into=[stats], **options)
    merged = (
        dist_.all_reduce_grouped(stats)
        if isinstance(stats, GroupedStats)
        else dist_.all_reduce_stats(stats)
    )
    total_stats = merged.total() if isinstance(merged, GroupedStats) else merged
    meta["n"] = total_stats.n
    meta.setdefault("dims", total_stats.dim)
    return merged, meta


# --------------------------------------------------------------------------- one side


class Lazy:
    """An extractor built on first use (when a side turns out to be images), then kept:
    one network for both sides, none for statistics or features."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._value: Any = None

    def get(self) -> Any:
        if self._value is None:
            self._value = self._build()
        return self._value

    @property
    def built(self) -> Any:
        return self._value


@dataclass
class Side:
    """One side of a comparison after one pass: statistics (always), the features
    (when asked for and within the cap, or memory-mapped from a feature file) and the
    class logits (when asked for)."""

    record: StatsRecord
    features: np.ndarray | None = None
    logits: np.ndarray | None = None
    source: Source | None = None

    @property
    def n(self) -> int | None:
        return self.record.n

    @property
    def meta(self) -> dict[str, Any]:
        return self.record.meta


def collect(
    source: Any,
    extractor: Any = None,
    *,
    features: str | None = None,
    logits: bool = False,
    feature_cap: int = FEATURES_IN_MEMORY_BYTES,
    name: str | None = None,
    **options: Any,
) -> Side:
    """Everything the metrics need of one source, from one pass.

    ``features``: ``None`` (statistics only), ``"if-fits"`` (kept for FID's exact route
    while within ``feature_cap``, single process) or ``"required"`` (KID, PRDC, CMMD:
    an error past the cap). ``logits``: also keep the FID Inception's class logits (IS).
    ``extractor`` may be a :class:`Lazy`, built only when the source is images.
    A statistics source gives its record (features or logits asked of it are an error).
    """
    src = resolve_source(source, name=name)
    if src.kind == "stats":
        if features == "required" or logits:
            raise needs_samples(src.name)
        return Side(src.value, source=src)
    if isinstance(extractor, Lazy):
        extractor = extractor.get() if src.kind == "images" else None
    stats = GaussianStats()
    into: list[Any] = [stats]
    bank = None
    if src.kind == "images" and features is not None:
        single = dist_.world_size() == 1
        if features == "required" or single:
            bank = FeatureBank(feature_cap, "error" if features == "required" else "drop")
            into.append(bank)
    logit_bank = FeatureBank(feature_cap, "error", "logits") if logits else None
    meta = stream(
        src,
        extractor,
        into=into,
        logits_into=[logit_bank] if logit_bank is not None else [],
        **options,
    )
    stats = dist_.all_reduce_stats(stats)
    meta["n"] = stats.n
    meta.setdefault("dims", stats.dim)
    kept = None
    if src.kind == "features" and features is not None:
        kept = src.value if isinstance(src.value, np.ndarray) else src.value.detach().cpu().numpy()
    elif bank is not None:
        kept = bank.array()
    record = StatsRecord(stats.mean, stats.cov, stats.n, meta, src.name, src.kind)
    return Side(record, kept, None if logit_bank is None else logit_bank.array(), src)
