"""Loading ``.npy`` inputs for the metric subcommands (errors name the file)."""

from __future__ import annotations

import argparse

import numpy as np

from ..errors import FidevalError
from . import _common

_SHAPES = {2: "(N, d)", 3: "(num_texts, num_repeats, d)"}


def load_array(path: str, ndim: int = 2, what: str = "features") -> np.ndarray:
    """The one array of ``path`` through the one reader (headers checked, one open,
    memory-mapped, native byte order); it must have ``ndim`` dimensions of real numbers."""
    from .._text import shown
    from ..data.features import open_array

    arr = open_array(path)
    if arr.ndim != ndim:
        raise FidevalError(
            f"{shown(path)}: {what} must be a {ndim}-D {_SHAPES.get(ndim, '')} array, "
            f"got shape {arr.shape}"
        )
    if arr.dtype.kind not in "biuf":
        raise FidevalError(f"{shown(path)}: {what} must be real numbers, got dtype {arr.dtype}")
    return arr


def add_compute_flags(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--float32`` for the chunked pairwise metrics."""
    _common.add_device_flag(parser)
    parser.add_argument(
        "--float32",
        action="store_true",
        help="compute pairwise blocks in float32 (faster, less exact; default float64)",
    )


def compute_dtype(args: argparse.Namespace) -> str:
    return "float32" if args.float32 else "float64"
