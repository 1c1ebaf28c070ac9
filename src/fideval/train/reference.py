"""Reference statistics for training-time FID: computed once, cached, never silently stale.

The reference is any source :func:`fideval.fid` accepts — a statistics file of any
layout (EDM2 pickles with ``#key`` too), an image folder, an image array file
(guided-diffusion's two-key sample files too), a 2-D feature file, an image tensor or
array, a dataset — resolved by :func:`fideval.streaming.resolve_source` and streamed by
:func:`fideval.streaming.stream`, the one path. Only the cache and the resumable
checkpoints are this module's own.

The cache key holds everything that changes the numbers, and is stored in the cache
file and compared in full on load:

    source fingerprint (every file's name, size and modification time; or every file's
    content with ``content_hash=True``; all bytes of a tensor) · image size ·
    preprocessing profile · extractor id · weights SHA-256 · dims · N ·
    augmentation ("none") · order ("sequential")

The file's name hashes the key without the fingerprint, so a changed source finds its
old entry, says what changed, and recomputes. The reference is read in a fixed order
straight from the source (never from the training iterator: no augmentation, no
advanced iterator). Computing it is resumable: every ``checkpoint_every`` batches the
partial state (count, mean, centred second moment — no covariance, so a checkpoint of
one image is valid) and the images consumed are written atomically to
``<name>.partial.npz``; a resumed run skips exactly those images. A checkpoint is used
only when its count equals the images it says were consumed, and one left behind by a
kill after the final file was cached is removed on the next cache hit (tested with
``kill -9`` at random moments in tests/test_kill.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import distributed as dist_
from .._text import shown
from ..errors import FidevalError
from ..frechet import FrechetReference
from ..io.atomic import atomic_write, check_writable
from ..io.provenance import make_provenance
from ..io.statsfile import StatsRecord, load_stats, save_stats
from ..io.weights import cache_home
from ..stats import GaussianStats
from ..streaming import Source, resolve_source, stream
from .hygiene import evaluation_mode

Extractor = Callable[[torch.Tensor], torch.Tensor]


def default_cache_dir() -> Path:
    """``$FIDEVAL_CACHE`` or ``$XDG_CACHE_HOME/fideval/reference`` (``~/.cache/…``)."""
    if os.environ.get("FIDEVAL_CACHE"):
        return Path(os.environ["FIDEVAL_CACHE"])
    return cache_home() / "fideval" / "reference"


def resolve_reference(reference: Any) -> Source:
    """A reference resolved at once (as :func:`fideval.fid` resolves a side): statistics
    are loaded and validated, samples are checked to hold at least 2 rows."""
    src = resolve_source(reference, name=_label(reference))
    if src.kind != "stats" and src.n is not None and src.n < 2:
        raise FidevalError(f"reference: need at least 2 images, got {src.n}")
    return src


def _label(reference: Any) -> str:
    if isinstance(reference, str | os.PathLike):
        return os.fspath(reference)
    return f"reference {type(reference).__name__}"


# --------------------------------------------------------------------------- cache


@dataclass
class ReferenceStats:
    """Reference statistics, their provenance, and the factored form for comparisons."""

    record: StatsRecord
    reference: FrechetReference
    cache_path: Path | None = None
    from_cache: bool = False


def extractor_provenance(extractor: Any) -> dict[str, Any]:
    if hasattr(extractor, "provenance"):
        return dict(extractor.provenance())
    return {"extractor": type(extractor).__name__}


def cache_key(source: Source, extractor: Any, n: int, *, content: bool = False) -> dict[str, Any]:
    """The key of a reference: every file (or byte) of the source, and the pipeline."""
    prov = extractor_provenance(extractor)
    desc = source.value.description() if source.kind == "images" else {}
    return {
        "dataset": source.fingerprint(content),
        "source": os.path.abspath(source.path) if source.path else source.form,
        "image_size": prov.get("image_size", _image_size(desc)),
        "profile": prov.get("profile"),
        "extractor": prov.get("extractor"),
        "weights_sha256": prov.get("weights_sha256"),
        "dims": prov.get("dims"),
        "n": int(n),
        "augmentation": "none",
        "order": "sequential",
    }


def _image_size(desc: dict[str, Any]) -> list[int] | None:
    """(H, W) of an in-memory or array-file image source: tensors are (N, C, H, W),
    numpy arrays (N, H, W[, C]); None for a folder (its images may differ)."""
    shape = desc.get("source_shape")
    if not shape or len(shape) < 3:
        return None
    if desc.get("source_kind") == "tensor":
        return [int(s) for s in shape[-2:]]
    return [int(s) for s in shape[1:3]]


def key_hash(key: dict[str, Any]) -> str:
    """The cache file's name: the key without the source fingerprint, so that a changed
    source finds (and replaces) its old entry."""
    stable = {k: v for k, v in key.items() if k != "dataset"}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:20]


def _save_partial(path: Path, stats: GaussianStats, consumed: int, key: dict[str, Any]) -> None:
    """A checkpoint: the mergeable state (n, mean, centred second moment; no covariance,
    so one image is enough), the images consumed and the key, written atomically."""
    if stats.n == 0:
        return  # nothing to keep yet
    state = stats.state_dict()
    arrays = {f"state_{k}": np.asarray(v) for k, v in state.items() if v is not None}
    arrays["consumed"] = np.array(int(consumed))
    arrays["meta"] = np.array(json.dumps({"cache_key": key, "partial": True}))
    with atomic_write(path) as fh:
        np.savez(fh, **arrays)


def _load_partial(path: Path, key: dict[str, Any]) -> tuple[GaussianStats, int] | None:
    """The checkpoint's state and count, or None when absent, foreign or damaged."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            state = {k[len("state_") :]: z[k] for k in z.files if k.startswith("state_")}
            consumed = int(z["consumed"])
        if meta.get("cache_key") != key or not meta.get("partial"):
            return None
        stats = GaussianStats.from_state_dict(
            {k: (v.item() if v.ndim == 0 else v) for k, v in state.items()}
        )
    except (OSError, ValueError, KeyError, EOFError, FidevalError, TypeError):
        return None  # a damaged checkpoint is ignored: recompute from scratch
    return stats, consumed


def _cache_folder(cache_dir: Any) -> Path | None:
    """The cache folder, checked writable before any work (None: caching off)."""
    if cache_dir == "":
        return None
    folder = Path(cache_dir or default_cache_dir())
    try:
        check_writable(folder / "probe.npz")
    except FidevalError as exc:
        raise FidevalError(
            f"reference cache: {exc}; choose a writable cache_dir= (or cache_dir='' to "
            "compute without caching)"
        ) from None
    return folder


def compute_reference_stats(
    reference: Any,
    extractor: Extractor,
    *,
    n: int | None = None,
    batch_size: int = 100,
    cache_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 20,
    device: torch.device | str | None = None,
    log: Callable[[str], None] | None = None,
    content_hash: bool = False,
    num_workers: int | None = 0,
    progress: bool = False,
) -> ReferenceStats:
    """Reference statistics from any source — cached and resumable.

    Args:
        reference: anything :func:`fideval.fid` accepts (statistics are used as they are).
        extractor: the extractor (or any module / callable mapping [0, 1] images to
            features), wrapped by :func:`fideval.extractor`; its provenance is in the key.
        n: number of reference images (default: all, in order).
        cache_dir: where cached statistics live (default :func:`default_cache_dir`);
            ``""`` disables caching. It is checked writable before any work.
        checkpoint_every: batches between atomic checkpoints of the partial statistics.
        content_hash: key the cache by every file's content (SHA-256), not by its name,
            size and modification time.
    """
    from ..features.registry import extractor as build_extractor

    log = log or (lambda _msg: None)
    source = reference if isinstance(reference, Source) else resolve_reference(reference)
    if source.kind == "stats":
        rec = source.value
        return ReferenceStats(rec, FrechetReference(rec.mu, rec.sigma, rec.n))
    extractor = extractor if source.kind == "features" else build_extractor(extractor)
    available = source.n
    total = available if n is None else int(n)
    if available is not None and total > available:
        raise FidevalError(f"reference: asked for n={total} images but the source has {available}")
    if total is None or total < 2:
        raise FidevalError(f"reference: need at least 2 images, got {total}")
    if source.kind == "images":
        source.value.n_total = total  # the first n, in order
    elif total != available:
        source = replace(source, value=source.value[:total], n=total)
    key = cache_key(source, extractor, total, content=content_hash)
    folder = _cache_folder(cache_dir) if key["dataset"] is not None else None
    final = partial = None
    if folder is not None:
        final = folder / f"ref-{key_hash(key)}.npz"
        suffix = f".rank{dist_.rank()}of{dist_.world_size()}" if dist_.is_distributed() else ""
        partial = folder / f"ref-{key_hash(key)}{suffix}.partial.npz"
        cached = _load_cached(final, key, log)
        # Every rank must take the same branch (or the all-reduce below would hang).
        if _all_agree(cached is not None) and cached is not None:
            # A kill between caching the result and removing the checkpoint leaves a
            # partial file that would never be read again: remove it.
            _remove_stale(partial, log)
            return ReferenceStats(
                cached, FrechetReference(cached.mu, cached.sigma, cached.n), final, True
            )
    start, stop = dist_.shard_range(total)
    stats, consumed = GaussianStats(), start
    if partial is not None:
        resumed = _load_partial(partial, key)
        # Resume only from a checkpoint of this rank's share whose count is exactly the
        # images it consumed: anything else would count images twice or not at all.
        if (
            resumed is not None
            and start <= resumed[1] <= stop
            and resumed[0].n == resumed[1] - start
        ):
            stats, consumed = resumed
            log(
                f"resuming reference statistics at {consumed - start}/{stop - start} images "
                f"from {shown(partial)}"
            )
    done_before = consumed - start
    batches_since = [0]

    def checkpoint(rows: int) -> None:
        batches_since[0] += 1
        now = start + done_before + rows
        if partial is not None and batches_since[0] >= checkpoint_every and now < stop:
            _save_partial(partial, stats, now, key)
            batches_since[0] = 0

    if consumed < stop:
        with evaluation_mode(extractor), torch.inference_mode():
            meta = stream(
                source,
                extractor,
                into=[stats],
                batch_size=batch_size,
                num_workers=num_workers,
                progress=progress,
                skip=done_before,
                after_batch=checkpoint,
                chunk_rows=batch_size,
            )
    else:
        meta = {}
    stats = dist_.all_reduce_stats(stats)
    fields = {k: v for k, v in meta.items() if k not in ("n", "created_at")}
    fields.update(extractor_provenance(extractor))
    fields.update(cache_key=key, n=stats.n, augmentation="none")
    meta = make_provenance(**fields)
    rec = StatsRecord(stats.mean, stats.cov, stats.n, meta)
    if final is not None:
        if dist_.is_main_process():
            try:
                save_stats(final, rec)
                log(f"reference statistics (N={stats.n}) cached to {shown(final)}")
            except (OSError, FidevalError) as exc:
                import warnings

                warnings.warn(
                    f"reference statistics computed but not cached: {shown(final)}: "
                    f"{getattr(exc, 'strerror', None) or exc}",
                    UserWarning,
                    stacklevel=2,
                )
        if partial is not None:
            partial.unlink(missing_ok=True)
    return ReferenceStats(rec, FrechetReference(rec.mu, rec.sigma, rec.n), final, False)


def _remove_stale(partial: Path | None, log: Callable[[str], None]) -> None:
    """Remove a leftover checkpoint once the complete statistics are cached."""
    if partial is not None and partial.exists():
        partial.unlink(missing_ok=True)
        log(f"removed the stale checkpoint {shown(partial)} (the statistics are cached)")


def _load_cached(
    final: Path, key: dict[str, Any], log: Callable[[str], None]
) -> StatsRecord | None:
    if not final.exists():
        return None
    try:
        rec = load_stats(final)
    except FidevalError as exc:
        log(f"reference cache {shown(final)} is unreadable ({exc}); recomputing")
        return None
    old = rec.meta.get("cache_key") or {}
    if old != key:
        changed = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
        why = (
            "the source changed since it was cached (a file was added, removed or modified)"
            if changed == ["dataset"]
            else f"its key differs in {', '.join(changed)}"
        )
        log(f"reference cache {shown(final)}: {why}; recomputing")
        return None
    log(f"reference statistics loaded from cache {shown(final)} (N={rec.n})")
    return rec


def _all_agree(flag: bool) -> bool:
    """True when ``flag`` holds on every rank."""
    if not dist_.is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if torch.distributed.get_backend() == "nccl":
        t = t.cuda()
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
    return bool(t.item())
