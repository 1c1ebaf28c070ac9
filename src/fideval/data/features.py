"""2-D feature array files (``.npy``, shape (N, d)), read memory-mapped in chunks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from ..errors import FidevalError


def open_array(path: str | os.PathLike[str]) -> np.ndarray:
    """Memory-map a ``.npy`` file (or load the single array of a one-key ``.npz``)."""
    p = str(path)
    if not os.path.exists(p):
        raise FidevalError(f"{p}: no such file")
    try:
        if p.endswith(".npz"):
            with np.load(p, allow_pickle=False) as data:
                if len(data.files) != 1:
                    raise FidevalError(
                        f"{p}: expected one array in the .npz, found keys {data.files}"
                    )
                return data[data.files[0]]
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
        if not isinstance(arr, np.ndarray):
            arr.close()
            raise FidevalError(f"{p}: a .npz archive under a .npy name; rename it to .npz")
        return arr
    except FidevalError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise FidevalError(f"{p}: not a readable NumPy array file ({exc})") from exc


def open_features(path: str | os.PathLike[str]) -> np.ndarray:
    """Open a 2-D (N, d) real-valued feature file; errors name the file and the shape."""
    arr = open_array(path)
    if arr.ndim != 2:
        raise FidevalError(
            f"{path}: features must be a 2-D (N, d) array, got shape {arr.shape}"
            + (" (a 4-D array is read as images)" if arr.ndim == 4 else "")
        )
    if arr.dtype.kind not in "fiu":
        raise FidevalError(f"{path}: features must be real numbers, got dtype {arr.dtype}")
    if arr.shape[0] < 2:
        raise FidevalError(f"{path}: need at least 2 feature rows, got N={arr.shape[0]}")
    return arr


def iter_feature_chunks(arr: np.ndarray, chunk_rows: int = 4096) -> Iterator[np.ndarray]:
    """Consecutive row chunks of ``arr`` (copied out of the memory map)."""
    for start in range(0, arr.shape[0], chunk_rows):
        yield np.asarray(arr[start : start + chunk_rows])
