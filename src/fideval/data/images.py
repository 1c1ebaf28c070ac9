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
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .. import _ranks as dist_
from ..errors import FidevalError
from .layout import to_nchw

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
        raise FidevalError(f"{root} is not a folder")
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
            return np.asarray(img.convert("RGB"))
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, ...
        raise FidevalError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc


def _npy_header(f: Any) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return tuple(shape), np.dtype(dtype)


def array_file_arrays(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of the arrays of a ``.npy`` (key ``""``) or ``.npz`` file, unread."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".npy":
            with open(p, "rb") as f:
                return {"": _npy_header(f)}
        out = {}
        with zipfile.ZipFile(p) as z:
            for name in z.namelist():
                if name.endswith(".npy"):
                    with z.open(name) as f:
                        out[name[:-4]] = _npy_header(f)
        return out
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise FidevalError(f"cannot read array file {p}: {exc}") from exc


def _is_image_shape(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    if len(shape) == 4:
        return True
    # (N, H, W) integer arrays are grayscale images; 3-D floats are ambiguous.
    return len(shape) == 3 and dtype.kind in "ui"


def image_array_key(path: str | Path) -> str | None:
    """The key of the images in an array file, or None if it holds no images."""
    arrays = array_file_arrays(path)
    if "" in arrays:
        return "" if _is_image_shape(*arrays[""]) else None
    for key in NPZ_IMAGE_KEYS:
        if key in arrays and _is_image_shape(*arrays[key]):
            return key
    four_d = [k for k, (shape, _) in arrays.items() if len(shape) == 4]
    return four_d[0] if len(four_d) == 1 else None


def is_image_array_file(path: str | Path) -> bool:
    """True for a ``.npy``/``.npz`` file holding images (4-D, or 3-D integer)."""
    p = Path(path)
    if p.suffix.lower() not in ARRAY_EXTENSIONS or not p.is_file():
        return False
    return image_array_key(p) is not None


def _fingerprint(items: Iterable[str]) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(item.encode("utf-8", "surrogateescape"))
        h.update(b"\n")
    return h.hexdigest()[:16]


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


class _FolderImages(Dataset):
    """One item per file: (preprocessed image or None, index, error or None)."""

    def __init__(
        self, files: list[Path], preprocess: Preprocess, start: int = 0, stop: int | None = None
    ):
        self.files = files
        self.preprocess = preprocess
        self.start = start  # files [start, stop) (a distributed shard); indices stay global
        self.stop = len(files) if stop is None else stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, j: int) -> tuple[torch.Tensor | None, int, str | None]:
        i = self.start + j
        try:
            return _one(self.preprocess, load_image_file(self.files[i])), i, None
        except FidevalError as exc:
            return None, i, str(exc)


def _collate_folder(items: list[tuple[torch.Tensor | None, int, str | None]]) -> dict[str, Any]:
    good = [(t, i) for t, i, e in items if e is None]
    return {
        "images": _stack([t for t, _ in good], "image folder") if good else None,
        "indices": [i for _, i in good],
        "bad": [(i, e) for _, i, e in items if e is not None],
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
    DataLoader workers for folders and array files; the extractor's ``worker_preprocess``,
    e.g. a profile giving float32 (B, 3, 299, 299), or :func:`raw_batch`).

    After (or during) iteration: :attr:`n_images` yielded so far, :attr:`skipped`
    (``(path, reason)`` of skipped files), :attr:`last_ids` (the paths or indices
    of the rows of the last batch), :meth:`description` (for provenance).
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
    ) -> None:
        if batch_size < 1:
            raise FidevalError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.num_workers = default_num_workers() if num_workers is None else int(num_workers)
        self.preprocess: Preprocess = preprocess or raw_batch
        self.profile = str(getattr(preprocess, "name", "raw"))
        self.skip_bad = skip_bad
        self.progress = progress
        self.skipped: list[tuple[str, str]] = []
        self.n_images = 0
        self.last_ids: list[Any] = []
        self._files: list[Path] | None = None
        self._desc: dict[str, Any]
        self.source = source
        self.n_total: int | None
        self._setup(source)
        self.label = desc or str(self._desc["source"])

    # -- source kinds
    def _setup(self, source: Any) -> None:
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            if path.is_dir():
                files = list_image_files(path)
                if not files:
                    raise FidevalError(
                        f"no image files in folder {path} (searched recursively for "
                        f"{', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))})"
                    )
                self._files = files
                self.n_total = len(files)
                rels = [f.relative_to(path).as_posix() for f in files]
                stats = [f.stat() for f in files]
                self._desc = {
                    "source": str(path.resolve()),
                    "source_kind": "folder",
                    "source_fingerprint": "files+sizes+mtimes:"
                    + _fingerprint(
                        f"{r}\t{s.st_size}\t{s.st_mtime_ns}"
                        for r, s in zip(rels, stats, strict=True)
                    ),
                }
                return
            if path.is_file() and path.suffix.lower() in ARRAY_EXTENSIONS:
                key = image_array_key(path)
                if key is None:
                    shapes = {k or "(npy)": s for k, (s, _) in array_file_arrays(path).items()}
                    raise FidevalError(
                        f"{path} holds no image array (N, H, W, C) or (N, H, W); "
                        f"found arrays {shapes}"
                    )
                shape, dtype = array_file_arrays(path)[key]
                st = path.stat()
                self._array_source = (path, key)
                self.n_total = int(shape[0])
                self._desc = {
                    "source": str(path.resolve()),
                    "source_kind": "image_array_file",
                    "source_key": key or None,
                    "source_shape": list(shape),
                    "source_dtype": str(dtype),
                    "source_fingerprint": "size+mtime:"
                    + _fingerprint([f"{st.st_size}\t{st.st_mtime_ns}"]),
                }
                return
            if not path.exists():
                raise FidevalError(f"{path} does not exist")
            raise FidevalError(
                f"{path} is neither a folder of images nor an image array file (.npy/.npz)"
            )
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
        if isinstance(source, Iterable):
            n = None
            if isinstance(source, DataLoader):
                try:
                    n = len(source.dataset)  # type: ignore[arg-type]
                except TypeError:
                    n = None
            self.n_total = n
            self._desc = {"source": type(source).__name__, "source_kind": "iterable"}
            return
        raise FidevalError(
            f"cannot read images from a {type(source).__name__}; expected a folder, an image "
            "array file, an array/tensor of images, or an iterable of batches"
        )

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
        if self.n_total is not None and self.n_total <= self.batch_size:
            workers = 0  # one batch: nothing to overlap, so no worker start-up
        if self._files is not None:
            ds: Dataset = _FolderImages(self._files, self.preprocess, start, stop)
            loader = DataLoader(
                ds,
                batch_size=self.batch_size,
                shuffle=False,
                num_workers=workers,
                collate_fn=_collate_folder,
            )
            yield from loader
            return
        if dist_.is_distributed() and self.n_total is None:
            raise FidevalError(
                "an iterable of batches cannot be split across torch.distributed ranks; "
                "give each rank its own share, or a folder / array source"
            )
        if isinstance(self.source, str | os.PathLike):
            path, key = self._array_source
            ds = _ArrayBatches(
                None, path, key, stop - start, self.batch_size, self.preprocess, start
            )
            yield from DataLoader(ds, batch_size=None, shuffle=False, num_workers=workers)
            return
        if isinstance(self.source, np.ndarray | torch.Tensor):
            ds = _ArrayBatches(
                self.source, None, "", stop - start, self.batch_size, self.preprocess, start
            )
            for b in range(len(ds)):
                yield ds[b]
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
        from tqdm.auto import tqdm

        self.skipped, self.n_images = [], 0
        world = dist_.world_size()
        bar = tqdm(
            total=self.n_total,
            desc=self.label if len(self.label) < 40 else "..." + self.label[-37:],
            unit="img",
            disable=not self.progress or not dist_.is_main_process(),
            dynamic_ncols=True,
        )
        try:
            for item in self._raw():
                for idx, reason in item["bad"]:
                    path = str(self._files[idx]) if self._files is not None else f"item {idx}"
                    if not self.skip_bad:
                        raise FidevalError(f"{reason} (use --skip-bad / skip_bad=True to skip)")
                    self.skipped.append((path, reason))
                images = item["images"]
                if images is None:
                    bar.update(len(item["bad"]) * world)
                    continue
                ids = item["indices"]
                self.last_ids = [str(self._files[i]) for i in ids] if self._files else ids
                self.n_images += images.shape[0]
                # Ranks advance at about the same pace: rank 0 shows the global count.
                bar.update((images.shape[0] + len(item["bad"])) * world)
                yield images
        finally:
            bar.close()
        if self.skipped:
            shown = ", ".join(p for p, _ in self.skipped[:10])
            more = f" and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
            warnings.warn(
                f"skipped {len(self.skipped)} unreadable image(s): {shown}{more}",
                UserWarning,
                stacklevel=2,
            )
        if self.n_images == 0:
            raise FidevalError(f"no images could be read from {self.label}")


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
