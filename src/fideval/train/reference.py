"""Reference statistics for training-time FID: computed once, cached, never silently stale.

The cache file's name is a hash of everything that changes the numbers, and the same
key is stored inside the file and compared in full on load:

    dataset fingerprint · image size · preprocessing profile · extractor id ·
    weights SHA-256 · dims · N · augmentation ("none") · order ("sequential")

The reference is read in a fixed order straight from the dataset (never from the
training iterator, so no augmentation and no advanced iterator). Computing it is
resumable: every ``checkpoint_every`` batches the partial statistics and the count of
images consumed are written atomically to ``<key>.partial.npz``; a resumed run skips
exactly those images, so nothing is lost or counted twice. A checkpoint is used only
when its sample count equals the images it says were consumed, and one left behind by
a kill after the final file was cached is removed on the next cache hit (tested with
``kill -9`` at random moments in tests/test_kill.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import distributed as dist_
from ..data.images import image_array_key, is_image_array_file, list_image_files, load_image_file
from ..errors import FidevalError
from ..frechet import FrechetReference
from ..io.provenance import make_provenance
from ..io.statsfile import StatsRecord, load_stats, save_stats
from ..io.weights import cache_home
from ..stats import GaussianStats
from .hygiene import evaluation_mode

Extractor = Callable[[torch.Tensor], torch.Tensor]


def default_cache_dir() -> Path:
    """``$FIDEVAL_CACHE`` or ``$XDG_CACHE_HOME/fideval/reference`` (``~/.cache/…``)."""
    if os.environ.get("FIDEVAL_CACHE"):
        return Path(os.environ["FIDEVAL_CACHE"])
    return cache_home() / "fideval" / "reference"


# --------------------------------------------------------------------------- datasets


class TensorImages:
    """An in-memory image tensor (N, C, H, W), float in [0, 1] or uint8 (→ /255)."""

    def __init__(self, images: torch.Tensor) -> None:
        if images.ndim != 4:
            raise FidevalError(
                f"reference images: expected (N, C, H, W), got shape {tuple(images.shape)}"
            )
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, start: int, stop: int) -> torch.Tensor:
        x = self.images[start:stop]
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()

    def fingerprint(self) -> str:
        data = self.images.detach().cpu().contiguous()
        h = hashlib.sha256(data.numpy().tobytes())
        return f"tensor:{tuple(data.shape)}:{data.dtype}:{h.hexdigest()[:16]}"

    @property
    def image_size(self) -> list[int]:
        return [int(s) for s in self.images.shape[2:]]


class DatasetImages:
    """An indexable dataset (``ds[i]`` an image tensor, or a tuple whose first item is)."""

    def __init__(self, dataset: Any, fingerprint_items: int = 64) -> None:
        self.dataset = dataset
        self.fingerprint_items = fingerprint_items

    def __len__(self) -> int:
        return len(self.dataset)

    def _item(self, i: int) -> torch.Tensor:
        item = self.dataset[i]
        if isinstance(item, tuple | list):
            item = item[0]
        if not isinstance(item, torch.Tensor):
            item = torch.as_tensor(np.asarray(item))
        return item.float() / 255.0 if item.dtype == torch.uint8 else item.float()

    def batch(self, start: int, stop: int) -> torch.Tensor:
        return torch.stack([self._item(i) for i in range(start, stop)])

    def fingerprint(self) -> str:
        """Class, length and a hash of evenly spaced items (the whole set when small)."""
        n = len(self)
        count = min(n, self.fingerprint_items)
        idx = np.unique(np.linspace(0, n - 1, count).round().astype(int)) if n else []
        h = hashlib.sha256()
        for i in idx:
            h.update(self._item(int(i)).numpy().tobytes())
        return f"dataset:{type(self.dataset).__name__}:{n}:{h.hexdigest()[:16]}"

    @property
    def image_size(self) -> list[int]:
        return [int(s) for s in self._item(0).shape[1:]] if len(self) else []


class _ImageFolder:
    """The images of a folder (recursive, sorted) as a dataset of uint8 (C, H, W) tensors."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.files = list_image_files(self.folder)
        if not self.files:
            raise FidevalError(f"reference folder {self.folder} holds no images")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.array(load_image_file(self.files[i]))).permute(2, 0, 1)


def _load_image_array(path: Path) -> np.ndarray:
    """The images of an array file as (N, H, W, C); (N, H, W) integer arrays are grayscale."""
    key = image_array_key(path)
    if key == "":
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    else:
        with np.load(path, allow_pickle=False) as z:
            arr = z[key]
    return np.asarray(arr)[..., None] if arr.ndim == 3 else np.asarray(arr)


def as_image_source(reference: Any) -> TensorImages | DatasetImages:
    """Images of a reference: a tensor/array, a folder or image-array file, or a dataset."""
    if isinstance(reference, TensorImages | DatasetImages):
        return reference
    if isinstance(reference, str | os.PathLike):
        path = Path(reference)
        if path.is_dir():
            return DatasetImages(_ImageFolder(path))
        if not path.exists():
            raise FidevalError(f"reference {path}: no such file or folder")
        if path.suffix in (".npy", ".npz") and is_image_array_file(path):
            return as_image_source(_load_image_array(path))
        raise FidevalError(
            f"reference {path}: expected a statistics .npz, an image folder or an image array "
            f"file (.npy/.npz, N×H×W×C uint8)"
        )
    if isinstance(reference, torch.Tensor):
        return TensorImages(reference)
    if isinstance(reference, np.ndarray):
        arr = torch.from_numpy(np.ascontiguousarray(reference))
        if arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
            arr = arr.permute(0, 3, 1, 2)  # NHWC → NCHW
        return TensorImages(arr)
    if hasattr(reference, "__len__") and hasattr(reference, "__getitem__"):
        return DatasetImages(reference)
    raise FidevalError(
        f"reference: expected a statistics file, a tensor/array of images or an indexable "
        f"dataset, got {type(reference).__name__}"
    )


def resolve_reference(reference: Any) -> StatsRecord | TensorImages | DatasetImages:
    """A reference checked at once: a statistics file is loaded (and validated), images
    are resolved into a source with at least 2 images."""
    if isinstance(reference, StatsRecord):
        return reference
    if isinstance(reference, str | os.PathLike) and str(reference).endswith(".npz"):
        try:
            images = is_image_array_file(reference)
        except FidevalError:  # unreadable: load_stats names the problem
            images = False
        if not images:
            return load_stats(reference)
    source = as_image_source(reference)
    if len(source) < 2:
        raise FidevalError(f"reference: need at least 2 images, got {len(source)}")
    return source


# --------------------------------------------------------------------------- cache


@dataclass
class ReferenceStats:
    """Reference statistics, their provenance, and the factored form for comparisons."""

    record: StatsRecord
    reference: FrechetReference
    cache_path: Path | None = None
    from_cache: bool = False


def cache_key(source: TensorImages | DatasetImages, extractor: Any, n: int) -> dict[str, Any]:
    prov = extractor_provenance(extractor)
    return {
        "dataset": source.fingerprint(),
        "image_size": source.image_size,
        "profile": prov.get("profile"),
        "extractor": prov.get("extractor"),
        "weights_sha256": prov.get("weights_sha256"),
        "dims": prov.get("dims"),
        "n": int(n),
        "augmentation": "none",
        "order": "sequential",
    }


def extractor_provenance(extractor: Any) -> dict[str, Any]:
    if hasattr(extractor, "provenance"):
        return dict(extractor.provenance())
    return {"extractor": type(extractor).__name__}


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _save_partial(path: Path, stats: GaussianStats, consumed: int, key: dict[str, Any]) -> None:
    """A checkpoint is a statistics file (:mod:`fideval.io.statsfile`, atomic) whose
    provenance holds the cache key and the images consumed (also the ``consumed`` key)."""
    if stats.n == 0:
        return  # nothing to keep yet
    meta = {"cache_key": key, "consumed": int(consumed), "partial": True}
    save_stats(path, stats, meta, extra={"consumed": np.array(int(consumed))})


def _load_partial(path: Path, key: dict[str, Any]) -> tuple[GaussianStats, int] | None:
    """The checkpoint's statistics and count, or None when absent, foreign or damaged."""
    if not path.exists():
        return None
    try:
        rec = load_stats(path)
    except FidevalError:  # a damaged checkpoint is ignored: recompute from scratch
        return None
    if rec.meta.get("cache_key") != key or not rec.meta.get("partial") or rec.n is None:
        return None
    return rec.to_stats(), int(rec.meta["consumed"])


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
) -> ReferenceStats:
    """Reference statistics from a stats file, images or a dataset — cached and resumable.

    Args:
        reference: a statistics file path (used as is), a :class:`StatsRecord`, an image
            tensor / array (N, C, H, W) in [0, 1] or uint8, or an indexable dataset.
        extractor: images in [0, 1] → features (B, d); its ``provenance()`` goes into
            the cache key.
        n: number of reference images (default: all, in order).
        cache_dir: where cached statistics live (default :func:`default_cache_dir`);
            ``False``-y ``""`` disables caching.
        checkpoint_every: batches between atomic checkpoints of the partial statistics.
    """
    log = log or (lambda _msg: None)
    if isinstance(reference, StatsRecord):
        return ReferenceStats(
            reference, FrechetReference(reference.mu, reference.sigma, reference.n)
        )
    reference = resolve_reference(reference)
    if isinstance(reference, StatsRecord):
        return ReferenceStats(
            reference, FrechetReference(reference.mu, reference.sigma, reference.n)
        )
    source = reference
    total = len(source) if n is None else int(n)
    if total > len(source):
        raise FidevalError(
            f"reference: asked for n={total} images but the dataset has {len(source)}"
        )
    if total < 2:
        raise FidevalError(f"reference: need at least 2 images, got {total}")
    key = cache_key(source, extractor, total)
    folder = None if cache_dir == "" else Path(cache_dir or default_cache_dir())
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
    # This rank's contiguous share of the reference (all of it without a process group).
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
                f"from {partial}"
            )
    batches_since = 0
    with (
        dist_.collective_guard("reference statistics"),
        evaluation_mode(extractor),
        torch.inference_mode(),
    ):
        while consumed < stop:
            end = min(consumed + batch_size, stop)
            images = source.batch(consumed, end)
            if device is not None:
                images = images.to(device)
            stats.update(extractor(images))
            consumed = end
            batches_since += 1
            if partial is not None and batches_since >= checkpoint_every and consumed < stop:
                _save_partial(partial, stats, consumed, key)
                batches_since = 0
    stats = dist_.all_reduce_stats(stats)
    meta = make_provenance(
        **extractor_provenance(extractor),
        cache_key=key,
        source=key["dataset"],
        n=stats.n,
        augmentation="none",
    )
    rec = StatsRecord(stats.mean, stats.cov, stats.n, meta)
    if final is not None:
        if dist_.is_main_process():
            save_stats(final, rec)
            log(f"reference statistics (N={stats.n}) cached to {final}")
        if partial is not None:
            partial.unlink(missing_ok=True)
    return ReferenceStats(rec, FrechetReference(rec.mu, rec.sigma, rec.n), final, False)


def _remove_stale(partial: Path | None, log: Callable[[str], None]) -> None:
    """Remove a leftover checkpoint once the complete statistics are cached."""
    if partial is not None and partial.exists():
        partial.unlink(missing_ok=True)
        log(f"removed the stale checkpoint {partial} (the statistics are cached)")


def _load_cached(
    final: Path, key: dict[str, Any], log: Callable[[str], None]
) -> StatsRecord | None:
    if not final.exists():
        return None
    rec = load_stats(final)
    if rec.meta.get("cache_key") != key:
        log(f"cache file {final} has a different key; recomputing")
        return None
    log(f"reference statistics loaded from cache {final} (N={rec.n})")
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
