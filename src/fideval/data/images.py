"""Image sources -> batches of images, preprocessed by the caller's function.

Sources:

* a folder, searched recursively for ``png jpg jpeg bmp webp tif tiff`` files
  (any case), in sorted order of their relative paths; images may differ in size;
* an image array file: ``.npy`` or ``.npz`` holding (N, H, W, C) or (N, H, W)
  images (uint8, or floats in [0, 1]); in ``.npz`` the key ``arr_0`` (what
  ``np.savez`` and guided-diffusion's sample files use), else ``images``, else
  the only 4-D array;
* a numpy array or torch tensor of images (N, H, W, C) / (N, C, H, W);
* a DataLoader or any iterable of batches (a tensor / array, a tuple or list
  whose first item is the images, or a dict with an ``images``/``image`` key).

Files are decoded (``PIL.Image.open(path).convert("RGB")``, as pytorch-fid and
clean-fid do) and preprocessed one by one in DataLoader worker processes, so
one folder can hold images of different sizes. An unreadable file raises a
:class:`~fideval.errors.FidevalError` naming it; with ``skip_bad=True`` it is
skipped, and :attr:`ImageStream.skipped` lists the skipped paths with reasons.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .. import _ranks as dist_
from .._text import shown
from ..errors import FidevalError
from .layout import to_nchw, to_tensor

#: A batch preprocessing: images (N, H, W, C) array or (N, C, H, W) tensor → a tensor.
#: Extractors hand theirs (``worker_preprocess``) to the workers; see fideval.features.
Preprocess = Callable[[Any], torch.Tensor]

#: Image file suffixes read from folders (matched case-insensitively): pytorch-fid's
#: IMAGE_EXTENSIONS (bmp, jpg, jpeg, pgm, png, ppm, tif, tiff, webp), all decoded by PIL.
IMAGE_EXTENSIONS = frozenset(
    {".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}
)
ARRAY_EXTENSIONS = frozenset({".npy", ".npz"})
NPZ_IMAGE_KEYS = ("arr_0", "images", "image", "samples", "x")


# --------------------------------------------------------------------------- files


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted by relative POSIX path."""
    root = Path(folder)
    if not root.is_dir():
        raise FidevalError(f"{shown(root)} is not a folder")
    files = [
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def load_image_file(path: str | Path) -> np.ndarray:
    """Decode one image file to uint8 (H, W, 3); errors name the file."""
    try:
        with Image.open(path) as img:
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit (or 32-bit integer) gray: PIL's convert("RGB") would clip every
                # value above 255; scale to 8 bits instead (x / 257, rounded, for 16-bit)
                wide = np.asarray(img, dtype=np.int64)
                top = 65535 if img.mode != "I" or wide.max() > 255 else 255
                gray = np.clip(np.rint(wide * (255.0 / top)), 0, 255).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=2)
            return np.asarray(img.convert("RGB"))
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, ...
        raise FidevalError(
            f"cannot read image {shown(path)}: {type(exc).__name__}: {shown(exc)}"
        ) from exc


def _is_image_shape(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    if len(shape) == 4:
        return True
    # (N, H, W) integer arrays are grayscale images; 3-D floats are ambiguous.
    return len(shape) == 3 and dtype.kind in "ui"


def image_array_key(source: Any) -> str | None:
    """The key of the images in an array file (an :class:`~fideval.data.arrayfile.ArrayFile`
    or a path), or None if it holds no images.

    ``.npz``: ``arr_0`` (``np.savez``; guided-diffusion's sample files, which may add
    ``arr_1`` labels), ``images``, ``image``, ``samples``, ``x``, else the only 4-D array.
    """
    from .arrayfile import ArrayFile

    af = source if isinstance(source, ArrayFile) else ArrayFile(source)
    arrays = {k: (h[0], h[1]) for k, h in af.headers.items()}
    if "" in arrays:
        return "" if _is_image_shape(*arrays[""]) else None
    for key in NPZ_IMAGE_KEYS:
        if key in arrays and _is_image_shape(*arrays[key]):
            return key
    four_d = [k for k, (shape, _) in arrays.items() if len(shape) == 4]
    return four_d[0] if len(four_d) == 1 else None


def default_num_workers() -> int:
    """Decoding workers: one fewer than the CPUs (the network uses the rest), at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus - 1))


# --------------------------------------------------------------------------- datasets


def raw_batch(images: Any) -> torch.Tensor:
    """The default preprocessing: the images as a (N, 3, H, W) tensor of their own dtype."""
    return to_nchw(images).contiguous()


def _one(preprocess: Preprocess, image: Any) -> torch.Tensor:
    """One image (H, W), (H, W, C) or (C, H, W) through a batch preprocessing."""
    if isinstance(image, torch.Tensor):
        return preprocess(image[None])[0]
    arr = np.asarray(image)
    return preprocess(arr[None] if arr.ndim == 3 else arr[None, :, :, None])[0]


def _stack(items: list[torch.Tensor], where: str) -> torch.Tensor:
    shapes = {tuple(t.shape) for t in items}
    if len(shapes) > 1:
        raise FidevalError(
            f"{where}: images of different sizes {sorted(shapes)[:3]} cannot form a batch; "
            "use an extractor that resizes (its preprocessing runs per image) or resize them"
        )
    return torch.stack(items)


Item = tuple[torch.Tensor | None, int, str | None, str]


class _FolderImages(Dataset):
    """One item per file: (preprocessed image or None, index, error or None, path)."""

    def __init__(
        self, files: list[Path], preprocess: Preprocess, start: int = 0, stop: int | None = None
    ):
        self.files = files
        self.preprocess = preprocess
        self.start = start  # files [start, stop) (a distributed shard); indices stay global
        self.stop = len(files) if stop is None else stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, j: int) -> Item:
        i = self.start + j
        path = shown(self.files[i])
        try:
            return _one(self.preprocess, load_image_file(self.files[i])), i, None, path
        except FidevalError as exc:
            return None, i, str(exc), path


class _IndexedImages(Dataset):
    """One item per index of a map-style dataset (``ds[i]`` an image, or a tuple whose
    first item is one), preprocessed in the workers."""

    def __init__(self, dataset: Any, preprocess: Preprocess, start: int, stop: int) -> None:
        self.dataset, self.preprocess, self.start, self.stop = dataset, preprocess, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, j: int) -> Item:
        i = self.start + j
        item = self.dataset[i]
        if isinstance(item, tuple | list):
            item = item[0]
        try:
            image = _one(
                self.preprocess,
                to_tensor(item)
                if not isinstance(item, Image.Image)
                else np.asarray(item.convert("RGB")),
            )
            return image, i, None, f"item {i}"
        except FidevalError as exc:
            return None, i, f"item {i}: {exc}", f"item {i}"


def _collate_items(items: list[Item]) -> dict[str, Any]:
    """A batch of single images; one whose size differs from the batch's first readable
    image is reported as bad, naming its file (skipped with ``skip_bad``)."""
    good: list[tuple[torch.Tensor, int]] = []
    bad: list[tuple[int, str]] = []
    shapes = [tuple(t.shape) for t, _, err, _ in items if err is None and t is not None]
    # the batch's size is its most common one (ties: the first seen), so one odd image
    # is the one named and skipped, wherever it is in the batch
    common = max(shapes, key=lambda s: (shapes.count(s), -shapes.index(s))) if shapes else None
    example = next(
        (p for t, _, e, p in items if e is None and t is not None and tuple(t.shape) == common),
        "",
    )
    for t, i, err, path in items:
        if err is not None or t is None:
            bad.append((i, err or f"cannot read {path}"))
            continue
        if tuple(t.shape) != common:
            bad.append(
                (
                    i,
                    f"{path}: size {tuple(t.shape)} after preprocessing differs from the "
                    f"batch's {common} (e.g. {example}); use an extractor that resizes, or "
                    "resize the images",
                )
            )
            continue
        good.append((t, i))
    return {
        "images": torch.stack([t for t, _ in good]) if good else None,
        "indices": [i for _, i in good],
        "bad": bad,
    }


class _ArrayBatches(Dataset):
    """One item per batch of an image array (opened lazily in each worker)."""

    def __init__(
        self,
        array: np.ndarray | None,
        path: Path | None,
        key: str,
        n: int,
        batch: int,
        preprocess: Preprocess,
        start: int = 0,
    ) -> None:
        self._array = array
        self.path, self.key, self.n, self.batch = path, key, n, batch
        self.preprocess = preprocess
        self.start = start  # rows [start, start + n) of the array (a distributed shard)

    def _arr(self) -> np.ndarray:
        if self._array is None:
            assert self.path is not None
            if self.key == "":
                self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
            else:
                with np.load(self.path, allow_pickle=False) as z:
                    self._array = z[self.key]
        return self._array

    def __len__(self) -> int:
        return -(-self.n // self.batch)

    def __getitem__(self, b: int) -> dict[str, Any]:
        lo = self.start + b * self.batch
        hi = self.start + min(self.n, (b + 1) * self.batch)
        chunk = self._arr()[lo:hi]
        if isinstance(chunk, np.ndarray):
            chunk = np.asarray(chunk)  # read a memory-mapped slice
        images = self.preprocess(chunk)
        return {"images": images, "indices": list(range(lo, hi)), "bad": []}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.path is not None and self.key == "":
            state["_array"] = None  # reopen the memory map in the worker
        return state


# --------------------------------------------------------------------------- stream


class ImageStream:
    """Iterable of batches from one source, each through ``preprocess`` (run in the
    DataLoader workers for folders, array files and datasets; the extractor's
    ``worker_preprocess``, e.g. a profile giving float32 (B, 3, 299, 299), or
    :func:`raw_batch`).

    The source is inspected once, here (a folder is listed and its files stat-ed once);
    :meth:`configure` sets the preprocessing and batching later, so a source resolved
    before the extractor is known is not inspected again.

    After (or during) iteration: :attr:`n_images` yielded so far, :attr:`skipped`
    (``(path, reason)`` of skipped files), :attr:`last_ids` (the paths or indices
    of the rows of the last batch), :meth:`description` (for provenance). ``skip``
    rows of this rank's share are passed over at the start (a resumed computation).
    """

    def __init__(
        self,
        source: Any,
        *,
        batch_size: int = 50,
        num_workers: int | None = None,
        preprocess: Preprocess | None = None,
        skip_bad: bool = False,
        progress: bool = False,
        desc: str | None = None,
        image_key: str | None = None,
    ) -> None:
        self.skipped: list[tuple[str, str]] = []
        self.n_images = 0
        self.skip = 0
        self.last_ids: list[Any] = []
        self._files: list[Path] | None = None
        self._root: Path | None = None
        self._array_file: Any = None
        self._array_key = ""
        self._dataset: Any = None
        self._desc: dict[str, Any]
        self.source = source
        self.n_total: int | None
        self._setup(source, image_key)
        self.label = desc or str(self._desc["source"])
        self.configure(
            preprocess=preprocess,
            batch_size=batch_size,
            num_workers=num_workers,
            skip_bad=skip_bad,
            progress=progress,
        )

    def configure(
        self,
        *,
        preprocess: Preprocess | None = None,
        batch_size: int = 50,
        num_workers: int | None = None,
        skip_bad: bool = False,
        progress: bool = False,
    ) -> ImageStream:
        """Set how the stream is read: preprocessing, batch size, workers, bad files, bar."""
        if batch_size < 1:
            raise FidevalError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.num_workers = default_num_workers() if num_workers is None else int(num_workers)
        self.preprocess: Preprocess = preprocess or raw_batch
        self.profile = str(getattr(preprocess, "name", "raw"))
        self.skip_bad = skip_bad
        self.progress = progress
        return self

    # -- source kinds
    def _setup(self, source: Any, image_key: str | None) -> None:
        from .arrayfile import ArrayFile

        if isinstance(source, str | os.PathLike):
            path = Path(source)
            if path.is_dir():
                self._setup_folder(path)
                return
            if not path.exists():
                raise FidevalError(f"{shown(path)} does not exist")
            if path.suffix.lower() not in ARRAY_EXTENSIONS:
                raise FidevalError(
                    f"{shown(path)} is neither a folder of images nor an image array file "
                    "(.npy/.npz)"
                )
            source = ArrayFile(path)
        if isinstance(source, ArrayFile):
            self._setup_array_file(source, image_key)
            return
        if isinstance(source, np.ndarray | torch.Tensor):
            if source.ndim not in (3, 4):
                raise FidevalError(
                    f"an image array must be (N, H, W, C), (N, C, H, W) or (N, H, W), "
                    f"got shape {tuple(source.shape)}"
                )
            self.n_total = int(source.shape[0])
            kind = "tensor" if isinstance(source, torch.Tensor) else "array"
            self._desc = {
                "source": f"in-memory {kind}",
                "source_kind": kind,
                "source_shape": list(source.shape),
                "source_dtype": str(source.dtype),
            }
            return
        if isinstance(source, Iterable) and not _is_indexable(source):
            n = None
            if isinstance(source, DataLoader):
                try:
                    n = len(source.dataset)  # type: ignore[arg-type]
                except TypeError:
                    n = None
            self.n_total = n
            self._desc = {"source": type(source).__name__, "source_kind": "iterable"}
            return
        if _is_indexable(source):
            self._dataset = source
            self.n_total = len(source)
            self._desc = {"source": type(source).__name__, "source_kind": "dataset"}
            return
        raise FidevalError(
            f"cannot read images from a {type(source).__name__}; expected a folder, an image "
            "array file, an array/tensor of images, a dataset, or an iterable of batches"
        )

    def _setup_folder(self, path: Path) -> None:
        files = list_image_files(path)
        if not files:
            raise FidevalError(
                f"no image files in folder {shown(path)} (searched recursively for "
                f"{', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))})"
            )
        self._files, self._root = files, path
        self.n_total = len(files)
        self._desc = {
            "source": str(path.resolve()),
            "source_kind": "folder",
            "source_fingerprint": self.fingerprint(),
        }

    def _setup_array_file(self, af: Any, image_key: str | None) -> None:
        key = image_key if image_key is not None else image_array_key(af)
        if key is None:
            shapes = {k or "(npy)": h[0] for k, h in af.headers.items()}
            raise FidevalError(
                f"{shown(af.path)} holds no image array (N, H, W, C) or (N, H, W); "
                f"found arrays {shapes}"
            )
        self._array_file, self._array_key = af, key
        shape, dtype = af.shape(key), af.dtype(key)
        self.n_total = int(shape[0])
        self._desc = {
            "source": str(Path(af.path).resolve()),
            "source_kind": "image_array_file",
            "source_key": key or None,
            "source_shape": list(shape),
            "source_dtype": str(dtype),
            "source_fingerprint": self.fingerprint(),
        }

    def fingerprint(self, content: bool = False) -> str | None:
        """What identifies the images, covering every one of them.

        Files: each file's relative name, size and modification time (``content=True``:
        the SHA-256 of every file's bytes). Arrays and tensors: a hash of all their
        bytes. A dataset: its files when it lists them (``samples``, ``imgs``, ``files``),
        else a hash of every item. ``None`` for a one-pass iterable (not cacheable).
        The stat fingerprint of files, taken when the source was opened, is reused.
        """
        known = getattr(self, "_desc", {}).get("source_fingerprint")
        if known is not None and not content:
            return known
        if self._files is not None:
            assert self._root is not None
            return _files_fingerprint(self._root, self._files, content)
        if self._array_file is not None:
            return _files_fingerprint(None, [Path(self._array_file.path)], content)
        if isinstance(self.source, np.ndarray | torch.Tensor):
            data = self.source.detach().cpu() if isinstance(self.source, torch.Tensor) else None
            arr = (
                data.contiguous().numpy() if data is not None else np.ascontiguousarray(self.source)
            )
            h = hashlib.sha256(arr.tobytes())
            return f"content:{tuple(arr.shape)}:{arr.dtype}:{h.hexdigest()[:20]}"
        if self._dataset is not None:
            listed = _dataset_files(self._dataset)
            if listed is not None:
                return _files_fingerprint(None, listed, content)
            h = hashlib.sha256()
            for i in range(len(self._dataset)):
                item = self._dataset[i]
                item = item[0] if isinstance(item, tuple | list) else item
                h.update(np.ascontiguousarray(np.asarray(item)).tobytes())
            return f"items:{len(self._dataset)}:{h.hexdigest()[:20]}"
        return None

    def description(self) -> dict[str, Any]:
        """Flat provenance fields: source, source_kind, source_fingerprint, n_skipped, ..."""
        d = dict(self._desc)
        if self.skipped:
            d["n_skipped"] = len(self.skipped)
            d["skipped"] = [p for p, _ in self.skipped[:100]]
        return d

    # -- iteration
    def shard(self) -> tuple[int, int]:
        """Rows [start, stop) this process reads: all of them, or its torch.distributed share."""
        total = self.n_total or 0
        if self.n_total is None or not dist_.is_distributed():
            return 0, total
        return dist_.shard_range(total)

    def _raw(self) -> Iterator[dict[str, Any]]:
        workers = self.num_workers
        start, stop = self.shard()
        start = min(stop, start + self.skip)
        if stop - start <= self.batch_size:
            workers = 0  # one batch: nothing to overlap, so no worker start-up
        if self._files is not None or self._dataset is not None:
            ds: Dataset = (
                _FolderImages(self._files, self.preprocess, start, stop)
                if self._files is not None
                else _IndexedImages(self._dataset, self.preprocess, start, stop)
            )
            yield from DataLoader(
                ds,
                batch_size=self.batch_size,
                shuffle=False,
                num_workers=workers,
                collate_fn=_collate_items,
                generator=_private_generator(),
            )
            return
        if dist_.is_distributed() and self.n_total is None:
            raise FidevalError(
                "an iterable of batches cannot be split across torch.distributed ranks; "
                "give each rank its own share, or a folder / array source"
            )
        if self._array_file is not None and self._array_file.is_npz:
            # A .npz member is decompressed as it is read, once, in this process.
            rows = self._array_file.iter_rows(self._array_key, start, stop, self.batch_size)
            lo = start
            for chunk in rows:
                hi = lo + chunk.shape[0]
                yield {"images": self.preprocess(chunk), "indices": list(range(lo, hi)), "bad": []}
                lo = hi
            return
        if self._array_file is not None or isinstance(self.source, np.ndarray | torch.Tensor):
            # The memory map is made once here; forked workers share it instead of
            # opening the file again.
            array = (
                self._array_file.array(self._array_key)
                if self._array_file is not None
                else self.source
            )
            ds = _ArrayBatches(
                array, None, "", stop - start, self.batch_size, self.preprocess, start
            )
            if self._array_file is None:
                workers = 0
            yield from DataLoader(
                ds,
                batch_size=None,
                shuffle=False,
                num_workers=workers,
                generator=_private_generator(),
            )
            return
        start = 0
        for i, batch in enumerate(self.source):
            raw = _batch_images(batch, i)
            if isinstance(raw, list):  # single images of possibly different sizes
                images = _stack([_one(self.preprocess, im) for im in raw], f"batch {i}")
            else:
                images = self.preprocess(raw)
            n = images.shape[0]
            yield {"images": images, "indices": list(range(start, start + n)), "bad": []}
            start += n

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Batches of images. The progress bar counts a batch once the consumer has
        finished with it (when the next one is asked for), so it reaches 100% when the
        work is done; it is closed before any error propagates."""
        from tqdm.auto import tqdm

        self.skipped, self.n_images = [], 0
        world = dist_.world_size()
        total = self.n_total
        bar = tqdm(
            total=total,
            initial=min(self.skip * world, total) if total is not None else self.skip,
            desc=self.label if len(self.label) < 40 else "..." + self.label[-37:],
            unit="img",
            disable=not self.progress or not dist_.is_main_process(),
            dynamic_ncols=True,
        )
        try:
            for item in self._raw():
                for idx, reason in item["bad"]:
                    path = shown(self._files[idx]) if self._files is not None else f"item {idx}"
                    if not self.skip_bad:
                        raise FidevalError(f"{reason} (pass skip_bad=True, --skip-bad, to skip it)")
                    self.skipped.append((path, reason))
                images = item["images"]
                if images is None:
                    bar.update(len(item["bad"]) * world)
                    continue
                ids = item["indices"]
                self.last_ids = [shown(self._files[i]) for i in ids] if self._files else ids
                self.n_images += images.shape[0]
                yield images
                # Ranks advance at about the same pace: rank 0 shows the global count.
                bar.update((images.shape[0] + len(item["bad"])) * world)
        finally:
            bar.close()
        if self.skipped:
            shown_ = ", ".join(p for p, _ in self.skipped[:10])
            more = f" and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
            warnings.warn(
                f"skipped {len(self.skipped)} image(s) (unreadable, or of another size): "
                f"{shown_}{more}",
                UserWarning,
                stacklevel=2,
            )
        if self.n_images == 0 and self.skip == 0:
            raise FidevalError(f"no images could be read from {shown(self.label)}")


def _private_generator() -> torch.Generator:
    """A DataLoader draws a seed from its generator on every iteration; a private one
    leaves the caller's (training) random state untouched."""
    return torch.Generator().manual_seed(0)


def _is_indexable(x: Any) -> bool:
    """A map-style dataset: ``len`` and ``[i]``, and not an iterable of batches."""
    if isinstance(x, DataLoader | list | tuple | np.ndarray | torch.Tensor):
        return False
    return hasattr(x, "__len__") and hasattr(x, "__getitem__")


def _dataset_files(dataset: Any) -> list[Path] | None:
    """The files a dataset reads, when it says (torchvision's ``samples`` / ``imgs``)."""
    for attr in ("samples", "imgs", "files"):
        items = getattr(dataset, attr, None)
        if isinstance(items, list) and items:
            first = items[0]
            if isinstance(first, tuple | list):
                return [Path(p[0]) for p in items]
            if isinstance(first, str | os.PathLike):
                return [Path(p) for p in items]
    return None


def _files_fingerprint(root: Path | None, files: list[Path], content: bool) -> str:
    """``files+sizes+mtimes:<hash>`` over every file, or ``content:<hash>`` of their bytes."""
    h = hashlib.sha256()
    for f in files:
        name = f.relative_to(root).as_posix() if root is not None else str(f.resolve())
        h.update(name.encode("utf-8", "surrogateescape"))
        if content:
            with open(f, "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(block)
        else:
            st = f.stat()
            h.update(f"\t{st.st_size}\t{st.st_mtime_ns}".encode())
        h.update(b"\n")
    kind = "content" if content else "files+sizes+mtimes"
    return f"{kind}:{len(files)}:{h.hexdigest()[:20]}"


def _batch_images(batch: Any, i: int) -> Any:
    if isinstance(batch, torch.Tensor | np.ndarray):
        return batch
    if isinstance(batch, dict):
        for key in ("images", "image", "img", "x"):
            if key in batch:
                return batch[key]
        raise FidevalError(f"batch {i} is a dict without an 'images' or 'image' key")
    if isinstance(batch, list | tuple) and batch:
        first = batch[0]
        if isinstance(first, torch.Tensor | np.ndarray) and first.ndim == 4:
            return first  # (images, labels, ...)
        if all(isinstance(b, torch.Tensor | np.ndarray) and b.ndim in (2, 3) for b in batch):
            return list(batch)  # a list of single images
    raise FidevalError(
        f"batch {i} is a {type(batch).__name__}; expected images (N, H, W, C) / (N, C, H, W), "
        "a tuple whose first item is the images, or a dict with an 'images' key"
    )


def iter_image_batches(
    source: Any,
    batch_size: int = 50,
    num_workers: int | None = None,
    preprocess: Preprocess | None = None,
    *,
    skip_bad: bool = False,
    progress: bool = False,
    desc: str | None = None,
) -> ImageStream:
    """Batches of ``source`` through ``preprocess`` (default: raw (B, 3, H, W) tensors of
    the images' dtype); see :class:`ImageStream`."""
    return ImageStream(
        source,
        batch_size=batch_size,
        num_workers=num_workers,
        preprocess=preprocess,
        skip_bad=skip_bad,
        progress=progress,
        desc=desc,
    )
