"""One open of a ``.npy`` / ``.npz`` file, shared by every reader of a command.

:class:`ArrayFile` opens the file once and keeps the handle: the headers of its arrays
(shape, dtype) are read without reading the data, a ``.npy`` array is memory-mapped
through the same handle, and a ``.npz`` member is decompressed at most once. The
source resolver, the statistics reader and the image and feature streams all take the
same :class:`ArrayFile`, so a command opens each input file exactly once.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from .._text import shown
from ..errors import FidevalError
from ..io.npyheader import ZIP_MAGIC, check_claim, read_npy_header, where_of, zip_member_size

Header = tuple[tuple[int, ...], np.dtype, bool]  # shape, dtype, fortran_order


class ArrayFile:
    """A ``.npy`` (one array, key ``""``) or ``.npz`` file, opened once.

    ``headers`` maps each key to (shape, dtype, fortran_order), read from the file's
    headers only; a header whose claimed size exceeds what the file (or member) holds is
    refused before anything is allocated. :meth:`array` returns the data (a read-only
    memory map for ``.npy``; a ``.npz`` member is read once and kept).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self.is_npz = self.path.lower().endswith(".npz")
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            raise FidevalError(f"{shown(self.path)}: no such file") from None
        except OSError as exc:
            raise FidevalError(f"{shown(self.path)}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            raise FidevalError(
                f"{shown(self.path)}: not a regular file (a pipe, socket or device); "
                "expected a .npy / .npz file"
            )
        try:
            self._fh: IO[bytes] = open(self.path, "rb")
        except IsADirectoryError:
            raise FidevalError(
                f"{shown(self.path)}: is a folder, not a {'.npz' if self.is_npz else '.npy'} "
                "file (an image folder must not be named like an array file)"
            ) from None
        except FileNotFoundError:
            raise FidevalError(f"{shown(self.path)}: no such file") from None
        self._zip: zipfile.ZipFile | None = None
        self._cache: dict[str, np.ndarray] = {}
        self.size = os.fstat(self._fh.fileno()).st_size
        try:
            self.headers = self._read_headers()
        except FidevalError:
            self.close()
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            self.close()
            raise FidevalError(self._unreadable(exc)) from exc

    def _unreadable(self, exc: BaseException) -> str:
        """The one message for a file numpy's formats do not describe."""
        name = shown(self.path)
        if self.is_npz:
            return (
                f"{name}: not a statistics file or array archive: it is not a NumPy .npz "
                f"(zip) archive, or it is truncated ({' '.join(str(exc).split())})"
            )
        return f"{name}: not a readable NumPy array file (.npy): {' '.join(str(exc).split())}"

    # ------------------------------------------------------------------ headers
    def _read_headers(self) -> dict[str, Header]:
        """Every header, each claim checked against what holds it (:mod:`fideval.io.npyheader`):
        the file for a ``.npy``; for a ``.npz`` member, its size in the zip directory, itself
        checked against the archive (a stored member fits in it; deflate expands ≤ 1032×)."""
        self._fh.seek(0)
        where = shown(self.path)
        if not self.is_npz:
            if self._fh.read(4) == ZIP_MAGIC:
                raise FidevalError(f"{where}: a .npz archive under a .npy name; rename it to .npz")
            self._fh.seek(0)
            header = read_npy_header(self._fh, where, "NumPy array file (.npy)")
            self._data_offset = header.header_size
            check_claim(header, self.size - header.header_size, where, holder="file")
            return {"": (header.shape, header.dtype, header.fortran)}
        self._zip = zipfile.ZipFile(self._fh)
        out: dict[str, Header] = {}
        for info in self._zip.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            at = where_of(self.path, key)
            size = zip_member_size(info, self.size, at)
            try:
                with self._zip.open(info) as member:
                    header = read_npy_header(member, at)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise FidevalError(f"{at} is damaged: its header cannot be read ({exc})") from None
            check_claim(header, size - header.header_size, at)
            out[key] = (header.shape, header.dtype, header.fortran)
        return out

    @property
    def keys(self) -> list[str]:
        return list(self.headers)

    def shape(self, key: str = "") -> tuple[int, ...]:
        return self.headers[key][0]

    def dtype(self, key: str = "") -> np.dtype:
        return self.headers[key][1]

    # ------------------------------------------------------------------ data
    def array(self, key: str = "") -> np.ndarray:
        """The array under ``key`` (``""`` for a ``.npy``), in native byte order."""
        if key in self._cache:
            return self._cache[key]
        if key not in self.headers:
            raise FidevalError(
                f"{shown(self.path)}: no key {key!r}; the file holds {sorted(self.headers)}"
            )
        shape, dtype, fortran = self.headers[key]
        try:
            if not self.is_npz:
                arr: np.ndarray = np.memmap(
                    self._fh,
                    dtype=dtype,
                    mode="r",
                    offset=self._data_offset,
                    shape=shape,
                    order="F" if fortran else "C",
                )
                if shape == ():
                    arr = np.asarray(arr)
            else:
                assert self._zip is not None
                with self._zip.open(key + ".npy") as member:
                    arr = np.lib.format.read_array(member, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            where = f"key {key!r}" if key else "the array"
            raise FidevalError(
                f"{shown(self.path)}: {where} could not be read: it is truncated or corrupt "
                f"({' '.join(str(exc).split())})"
            ) from exc
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        self._cache[key] = arr
        return arr

    def iter_rows(self, key: str, start: int, stop: int, batch: int) -> Iterator[np.ndarray]:
        """Rows [start, stop) of the array under ``key`` in batches of ``batch`` rows,
        without reading the whole array: a slice of the memory map (``.npy``), or a
        sequential read of the ``.npz`` member (decompressed as it goes)."""
        shape, dtype, fortran = self.headers[key]
        if not self.is_npz:
            arr = self.array(key)
            for lo in range(start, stop, batch):
                yield np.asarray(arr[lo : min(stop, lo + batch)])
            return
        if key in self._cache:
            arr = self._cache[key]
            for lo in range(start, stop, batch):
                yield arr[lo : min(stop, lo + batch)]
            return
        if fortran and len(shape) > 1:
            raise FidevalError(
                f"{shown(self.path)}: key {key!r} is stored in Fortran order; save it in C order"
            )
        row_bytes = dtype.itemsize
        for s in shape[1:]:
            row_bytes *= s
        assert self._zip is not None
        with self._zip.open(key + ".npy") as member:
            read_npy_header(member, where_of(self.path, key))
            if start:
                _read_exact(member, start * row_bytes, self.path, key)
            for lo in range(start, stop, batch):
                rows = min(stop, lo + batch) - lo
                raw = _read_exact(member, rows * row_bytes, self.path, key)
                arr = np.frombuffer(raw, dtype=dtype).reshape((rows, *shape[1:]))
                if not arr.dtype.isnative:
                    arr = arr.astype(arr.dtype.newbyteorder("="))
                yield arr

    def __getitem__(self, key: str) -> np.ndarray:
        return self.array(key)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        self._fh.close()

    def __repr__(self) -> str:
        return f"ArrayFile({self.path!r}, keys={self.keys})"


def _read_exact(fh: IO[bytes], count: int, path: str, key: str) -> bytes:
    try:
        data = fh.read(count)
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise FidevalError(
            f"{shown(path)}: key {key!r} could not be read: it is truncated or corrupt ({exc})"
        ) from exc
    if len(data) != count:
        raise FidevalError(
            f"{shown(path)}: key {key!r} is truncated ({len(data)} of {count} bytes read)"
        )
    return data


def open_array_file(path: str | os.PathLike[str]) -> ArrayFile:
    """Open ``path`` once; see :class:`ArrayFile`."""
    return ArrayFile(Path(path))
