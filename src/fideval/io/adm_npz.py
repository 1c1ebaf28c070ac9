"""Streaming reads of one array of an ``.npz`` file (the ADM evaluator's ``arr_0``).

An ADM sample batch holds 50 000 images of 256² in ``arr_0`` (9.8 GB); loading it whole
is not an option, and ``np.load(..., mmap_mode="r")`` does not memory-map members of an
``.npz``. :func:`open_npz_array` reads only the member's ``.npy`` header and then rows
on demand, holding at most one batch in memory:

* **stored** members (``np.savez``): the array data lies uncompressed in the file, at
  ``header_offset + 30 + len(name) + len(extra)`` (the zip local header) plus the
  ``.npy`` header. Rows are read with ``seek`` + ``readinto`` at any position.
* **deflated** members (``np.savez_compressed``): rows are decompressed in order through
  :meth:`zipfile.ZipFile.open` (sequential; the zip CRC is checked at the end).

Only C-ordered arrays of a plain (non-object) dtype are streamed; anything else is an
error naming the file and the member. Small members (``mu``, ``sigma``…) are read whole
with :func:`read_npz_member`. Every header goes through :mod:`fideval.io.npyheader`
first: a shape that claims more bytes than the member holds is refused before anything
is read or allocated.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from .._text import shown
from ..errors import FidevalError
from .npyheader import (
    NpyHeader,
    check_claim,
    check_npz,
    read_member,
    read_npy_header,
    where_of,
    zip_member_size,
)

__all__ = ["NpzArrayReader", "npz_keys", "open_npz_array", "read_npz_member"]

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # zip local file header, 30 bytes
_LOCAL_MAGIC = b"PK\x03\x04"


def _zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path, "r")
    except FileNotFoundError:
        raise FidevalError(f"{shown(path)}: no such file") from None
    except IsADirectoryError:
        raise FidevalError(f"{shown(path)}: is a folder; expected an .npz file") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise FidevalError(
            f"{shown(path)}: not an .npz file (not a zip archive: {shown(exc)})"
        ) from exc


def npz_keys(path: str | Path) -> list[str]:
    """Names of the arrays in an ``.npz`` file (its ``*.npy`` members, suffix removed)."""
    p = Path(path)
    with _zip(p) as zf:
        return [n[:-4] for n in zf.namelist() if n.endswith(".npy")]


def read_npz_member(path: str | Path, key: str) -> np.ndarray:
    """One (small) array of an ``.npz`` file, read whole, without unpickling anything.

    Its header is checked first: an object dtype or a claim beyond the member's size
    is refused before the data is read.
    """
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as data:
            if key not in data.files:
                raise FidevalError(
                    f"{shown(p)}: no key {key!r} (keys: {', '.join(map(repr, data.files))})"
                )
            header = check_npz(p, [key]).get(key)
            if header is None:
                raise FidevalError(f"{shown(p)}: key {key!r} is not a .npy array member")
            return read_member(data, p, key, header)
    except FidevalError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise FidevalError(f"{shown(p)}: cannot read key {key!r}: {shown(exc)}") from exc


class NpzArrayReader:
    """Rows of one ``.npz`` member, read in batches (see the module doc).

    Attributes: ``path``, ``key``, ``shape``, ``dtype``, ``compressed`` (deflated
    member: sequential reads only), ``where`` (``"file: key"`` for messages).
    """

    def __init__(
        self,
        path: Path,
        key: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        *,
        raw: IO[bytes] | None,
        data_offset: int,
        stream: IO[bytes] | None,
    ) -> None:
        self.path = path
        self.key = key
        self.shape = shape
        self.dtype = dtype
        self.compressed = stream is not None
        self.where = where_of(path, key)
        self._raw = raw
        self._offset = data_offset
        self._stream = stream
        self._next = 0  # next row of the sequential stream
        self.row_bytes = reader_row_bytes(shape, dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as a new array. Deflated members: ``start`` must be the
        row after the last one read (a stream cannot go back)."""
        n = self.shape[0]
        if not 0 <= start <= stop <= n:
            raise FidevalError(f"{self.where}: rows [{start}, {stop}) outside [0, {n})")
        count = stop - start
        out = np.empty((count, *self.shape[1:]), dtype=self.dtype)
        buf = memoryview(out.reshape(-1).view(np.uint8))
        want = count * self.row_bytes
        if self._stream is None:
            assert self._raw is not None
            self._raw.seek(self._offset + start * self.row_bytes)
            got = self._raw.readinto(buf)
        else:
            if start != self._next:
                raise FidevalError(
                    f"{self.where}: a compressed member is read in order; asked for row "
                    f"{start}, next is {self._next}"
                )
            got = 0
            try:
                while got < want:
                    chunk = self._stream.read(min(want - got, 1 << 24))
                    if not chunk:
                        break
                    buf[got : got + len(chunk)] = chunk
                    got += len(chunk)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise FidevalError(
                    f"{self.where}: cannot decompress rows [{start}, {stop}): {shown(exc)}"
                ) from exc
        if got != want:
            raise FidevalError(
                f"{self.where}: truncated: rows [{start}, {stop}) need {want} bytes, "
                f"read {got} (the header says shape {self.shape})"
            )
        self._next = stop
        return out

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """All rows in order, ``batch_size`` at a time (the last batch may be short)."""
        if batch_size < 1:
            raise FidevalError(f"batch_size must be ≥ 1, got {batch_size}")
        for start in range(0, self.shape[0], batch_size):
            yield self.read(start, min(self.shape[0], start + batch_size))


def _stored_offset(raw: IO[bytes], info: zipfile.ZipInfo, where: str) -> int:
    """Where a stored member's bytes start in the archive (after its local header)."""
    raw.seek(info.header_offset)
    head = raw.read(_LOCAL_HEADER.size)
    if len(head) != _LOCAL_HEADER.size or head[:4] != _LOCAL_MAGIC:
        raise FidevalError(f"{where}: damaged zip local header")
    fields: Any = _LOCAL_HEADER.unpack(head)
    name_len, extra_len = fields[9], fields[10]
    return int(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)


def _checked_header(fp: IO[bytes], member_size: int, where: str) -> NpyHeader:
    """Read the member's header and check it (order, dtype, rank, claimed size)."""
    header = read_npy_header(fp, where)
    if header.fortran:
        raise FidevalError(f"{where}: stored in Fortran order; expected a C-ordered array")
    if len(header.shape) < 1:
        raise FidevalError(f"{where}: a 0-d array; expected rows")
    check_claim(header, member_size - header.header_size, where)
    return header


@contextmanager
def open_npz_array(path: str | Path, key: str = "arr_0") -> Iterator[NpzArrayReader]:
    """Open member ``key`` of an ``.npz`` file for streaming reads (context manager)."""
    p = Path(path)
    where = where_of(p, key)
    with _zip(p) as zf:
        name = f"{key}.npy"
        try:
            info = zf.getinfo(name)
        except KeyError:
            keys = [repr(n[:-4]) for n in zf.namelist() if n.endswith(".npy")]
            raise FidevalError(
                f"{shown(p)}: no key {key!r} (keys: {', '.join(keys) or 'none'})"
            ) from None
        size = zip_member_size(info, p.stat().st_size, where)
        if info.compress_type == zipfile.ZIP_STORED:
            with open(p, "rb") as raw:
                start = _stored_offset(raw, info, where)
                raw.seek(start)
                header = _checked_header(raw, size, where)
                if header.header_size + header.nbytes != size:
                    raise FidevalError(
                        f"{where}: the member holds {size} bytes but its header "
                        f"({header.describe()}) needs {header.header_size + header.nbytes}: "
                        "truncated or damaged"
                    )
                yield NpzArrayReader(
                    p,
                    key,
                    header.shape,
                    header.dtype,
                    raw=raw,
                    data_offset=start + header.header_size,
                    stream=None,
                )
        else:
            try:
                stream = zf.open(info, "r")
            except (NotImplementedError, zipfile.BadZipFile, OSError) as exc:
                raise FidevalError(f"{where}: cannot open the member: {shown(exc)}") from exc
            with stream:
                header = _checked_header(stream, size, where)
                yield NpzArrayReader(
                    p, key, header.shape, header.dtype, raw=None, data_offset=0, stream=stream
                )


def reader_row_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Bytes of one row (all axes but the first) of an array of ``shape`` and ``dtype``."""
    return int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
