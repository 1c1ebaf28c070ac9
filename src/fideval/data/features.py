"""2-D feature array files (``.npy``, shape (N, d)), read memory-mapped in chunks.

Every file's header is checked first (:mod:`fideval.io.npyheader`): object dtypes and
shapes larger than the file are refused before anything is allocated. Chunks come out
in native byte order (a big-endian ``>f4`` file is valid input).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator

import numpy as np

from .._text import shown
from ..errors import FidevalError
from ..io.npyheader import check_npy, check_npz, read_member, sniff


def _open_npz_single(p: str) -> np.ndarray:
    """The one array of a one-key ``.npz`` (read whole; its header checked first)."""
    from ..io.statsfile import missing_stats_key

    with np.load(p, allow_pickle=False) as data:
        message = missing_stats_key(p, data.files)
        if message is not None:
            raise FidevalError(message)
        if len(data.files) != 1:
            raise FidevalError(
                f"{shown(p)}: expected one array in the .npz, found keys {data.files}"
            )
        key = data.files[0]
        header = check_npz(p, [key]).get(key)
        if header is None:
            raise FidevalError(f"{shown(p)}: key {key!r} is not a .npy array member")
        return read_member(data, p, key, header)


def _open_npy(p: str) -> np.ndarray:
    """Memory-map a ``.npy`` file whose header was checked against the file size."""
    check_npy(p)
    arr = np.load(p, mmap_mode="r", allow_pickle=False)
    if not isinstance(arr, np.ndarray):  # pragma: no cover - sniffed as .npy
        raise FidevalError(f"{shown(p)}: not a .npy array")
    return arr


def open_array(path: str | os.PathLike[str]) -> np.ndarray:
    """Memory-map a ``.npy`` file (or load the single array of a one-key ``.npz``)."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FidevalError(f"{shown(p)}: no such file")
    try:
        kind = sniff(p)
        if p.endswith(".npz"):
            if kind == "npy":
                raise FidevalError(f"{shown(p)}: a .npy array under a .npz name; rename it to .npy")
            return _open_npz_single(p)
        if kind == "zip":
            raise FidevalError(f"{shown(p)}: a .npz archive under a .npy name; rename it to .npz")
        return _open_npy(p)
    except FidevalError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        detail = shown(" ".join(str(exc).split())[:200])
        raise FidevalError(f"{shown(p)}: not a readable NumPy array file ({detail})") from exc


def open_features(path: str | os.PathLike[str]) -> np.ndarray:
    """Open a 2-D (N, d) real-valued feature file; errors name the file and the shape."""
    arr = open_array(path)
    where = shown(os.fspath(path))
    if arr.ndim != 2:
        raise FidevalError(
            f"{where}: features must be a 2-D (N, d) array, got shape {arr.shape}"
            + (" (a 4-D array is read as images)" if arr.ndim == 4 else "")
        )
    if arr.dtype.kind not in "fiu":
        raise FidevalError(f"{where}: features must be real numbers, got dtype {arr.dtype}")
    if arr.shape[1] == 0:
        raise FidevalError(
            f"{where}: features have zero width (shape {arr.shape}); expected (N, d) with d ≥ 1"
        )
    if arr.shape[0] < 2:
        raise FidevalError(f"{where}: need at least 2 feature rows, got N={arr.shape[0]}")
    return arr


def iter_feature_chunks(arr: np.ndarray, chunk_rows: int = 4096) -> Iterator[np.ndarray]:
    """Consecutive row chunks of ``arr`` (copied out of the memory map, native byte order)."""
    native = arr.dtype if arr.dtype.isnative else arr.dtype.newbyteorder("=")
    for start in range(0, arr.shape[0], chunk_rows):
        yield np.asarray(arr[start : start + chunk_rows], dtype=native)
