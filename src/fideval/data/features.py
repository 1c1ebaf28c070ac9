"""2-D feature arrays (N, d): the one check, and feature files opened through the one
array reader (:class:`~fideval.data.arrayfile.ArrayFile`: headers checked before any
allocation, a ``.npy`` memory-mapped, any byte order)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .._arrays import check_width
from .._text import shown
from ..errors import FidevalError
from .arrayfile import ArrayFile


def check_features(arr: Any, name: str) -> Any:
    """``arr`` if it is a real (N, d) array with N ≥ 2 and d ≥ 1; else one clear error."""
    shape = tuple(arr.shape)
    if len(shape) != 2:
        raise FidevalError(
            f"{name}: features must be a 2-D (N, d) array, got shape {shape}"
            + (" (a 4-D array is read as images)" if len(shape) == 4 else "")
        )
    real = arr.dtype.kind in "fiu" if isinstance(arr, np.ndarray) else not arr.is_complex()
    if not real or (isinstance(arr, torch.Tensor) and arr.dtype == torch.bool):
        raise FidevalError(f"{name}: features must be real numbers, got dtype {arr.dtype}")
    check_width(shape, name)
    if shape[0] < 2:
        raise FidevalError(f"{name}: need at least 2 feature rows, got N={shape[0]}")
    return arr


def open_array(path: str | os.PathLike[str]) -> np.ndarray:
    """The one array of a ``.npy`` file (memory-mapped) or of a one-key ``.npz``."""
    af = ArrayFile(path)
    keys = af.keys
    if len(keys) != 1:
        raise FidevalError(
            f"{shown(os.fspath(path))}: expected one array in the .npz, found keys {keys}"
        )
    return af.array(keys[0])


def open_features(path: str | os.PathLike[str]) -> np.ndarray:
    """A 2-D (N, d) real-valued feature file; errors name the file and the shape."""
    return check_features(open_array(path), shown(os.fspath(path)))


def iter_feature_chunks(arr: np.ndarray, chunk_rows: int = 4096) -> Iterator[np.ndarray]:
    """Consecutive row chunks of ``arr`` (copied out of the memory map, native byte order)."""
    native = arr.dtype if arr.dtype.isnative else arr.dtype.newbyteorder("=")
    for start in range(0, arr.shape[0], chunk_rows):
        yield np.asarray(arr[start : start + chunk_rows], dtype=native)
