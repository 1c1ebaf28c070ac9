"""One reader for ``.npy`` headers, in files and in ``.npz`` members, checked before loading.

A ``.npy`` header states a shape and a dtype; :func:`numpy.load` allocates
``prod(shape) * itemsize`` bytes from it before it reads the data, so a file of a few
hundred bytes can ask for terabytes. Every loader of fideval (statistics files,
feature and image arrays, ADM batches) reads the header here first and compares the
bytes it claims with the bytes the file or zip member really holds:

* ``.npy`` file: the file size after the header;
* ``.npz`` member: the uncompressed size in the zip directory (``file_size``), itself
  checked against the archive (a stored member lies whole in the file; deflate
  expands at most :data:`DEFLATE_MAX_RATIO` times).

A claim beyond what is there, an object dtype (its data would be a pickle) or a
malformed header is a :class:`~fideval.errors.FidevalError` naming the file, the key
and the claimed size, raised before anything is allocated. All of it is cheap: only
headers and the zip directory are read.
"""

from __future__ import annotations

import ast
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .._text import shown
from ..errors import FidevalError

__all__ = [
    "DEFLATE_MAX_RATIO",
    "NpyHeader",
    "check_claim",
    "check_npy",
    "check_npz",
    "human_bytes",
    "read_member",
    "read_npy_header",
    "sniff",
    "zip_member_size",
]

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
#: The largest header numpy reads without ``allow_pickle`` (``max_header_size``).
MAX_HEADER_BYTES = 10_000
#: Deflate turns one byte into at most 1032 (RFC 1951 limits; zlib's own bound).
DEFLATE_MAX_RATIO = 1032
_DEFLATE_SLACK = 1 << 10
_LONG_SUFFIX = re.compile(r"(\d+)L\b")  # Python 2 longs in old headers: (10L, 3L)


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header claims: shape, dtype, order and where the data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    #: Bytes before the array data (magic, version, length, header text).
    header_size: int

    @property
    def nbytes(self) -> int:
        """Bytes of array data the header claims (exact, no overflow)."""
        count = 1
        for s in self.shape:
            count *= s
        return count * self.dtype.itemsize

    def describe(self) -> str:
        """``"shape (3, 3) float64 = 72 B"`` for messages."""
        return f"shape {self.shape} {self.dtype} = {human_bytes(self.nbytes)}"


def human_bytes(n: int) -> str:
    """``1234`` → ``"1.2 KB"`` (decimal units, one decimal; bytes below 1000)."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB", "PB", "EB"):
        value /= 1000.0
        if value < 999.95 or unit == "EB":
            return f"{value:.1f} {unit}"
    return f"{n} B"  # pragma: no cover - unreachable


def where_of(path: str | os.PathLike[str], key: str | None) -> str:
    """``"stats.npz: key 'sigma'"`` (or the path alone), escaped for printing."""
    return shown(path) if key is None else f"{shown(path)}: key {key!r}"


def sniff(path: str | os.PathLike[str]) -> str:
    """``"npy"``, ``"zip"`` or ``"other"`` from the first bytes of a file."""
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(ZIP_MAGIC[:4]):
        return "zip"
    return "other"


def _unreadable(where: str, what: str, reason: str) -> FidevalError:
    return FidevalError(f"{where}: not a readable {what} ({reason})")


def _read_exact(fp: IO[bytes], n: int, where: str, what: str) -> bytes:
    data = fp.read(n)
    if len(data) != n:
        raise _unreadable(where, what, f"the .npy header ends after {len(data)} of {n} bytes")
    return data


def _parse_header_text(text: str, major: int) -> Any:
    try:
        return ast.literal_eval(text)
    except (SyntaxError, ValueError):
        if major >= 3:
            raise
        return ast.literal_eval(_LONG_SUFFIX.sub(r"\1", text))


def read_npy_header(fp: IO[bytes], where: str, what: str = "NumPy array") -> NpyHeader:
    """Read the ``.npy`` header at the current position of ``fp`` (versions 1.0 to 3.0).

    ``where`` (already escaped) prefixes every error; ``what`` names the thing in
    ``"<where>: not a readable <what> (<reason>)"``. Nothing but the header is read.
    """
    start = fp.read(8)
    if start[:6] != NPY_MAGIC[: len(start)] or len(start) < 6:
        raise _unreadable(where, what, "no NUMPY magic: not a .npy array")
    if len(start) < 8:
        raise _unreadable(where, what, "the .npy header is truncated")
    major = start[6]
    if major not in (1, 2, 3):
        raise _unreadable(where, what, f".npy format version {major}.{start[7]}")
    width = 2 if major == 1 else 4
    (length,) = struct.unpack("<H" if width == 2 else "<I", _read_exact(fp, width, where, what))
    if length > MAX_HEADER_BYTES:
        raise _unreadable(
            where, what, f".npy header of {length} bytes; at most {MAX_HEADER_BYTES} are read"
        )
    raw = _read_exact(fp, length, where, what)
    try:
        d = _parse_header_text(raw.decode("utf-8" if major == 3 else "latin1"), major)
        shape, fortran, descr = d["shape"], d["fortran_order"], d["descr"]
        dtype = np.lib.format.descr_to_dtype(descr)
    except Exception as exc:  # any malformed header text
        detail = shown(" ".join(str(exc).split())[:120])
        raise _unreadable(where, what, f"invalid .npy header: {detail}") from None
    if not (isinstance(shape, tuple) and all(_is_size(s) for s in shape)):
        raise _unreadable(where, what, f".npy header with shape {shown(repr(shape)[:80])}")
    if not isinstance(fortran, bool):
        raise _unreadable(
            where, what, f".npy header with fortran_order {shown(repr(fortran)[:40])}"
        )
    return NpyHeader(tuple(shape), dtype, fortran, 8 + width + length)


def _is_size(s: object) -> bool:
    return isinstance(s, int) and not isinstance(s, bool) and s >= 0


def check_claim(header: NpyHeader, available: int, where: str, holder: str = "member") -> None:
    """Refuse object dtypes and a claim of more bytes than ``available``.

    ``holder`` names what holds the data in the message (``"member"``, ``"file"``).
    """
    if header.dtype.hasobject:
        raise FidevalError(
            f"{where} holds Python objects (dtype {header.dtype}, pickled data), which "
            "fideval does not load; expected a numeric array"
        )
    if header.nbytes > available:
        raise FidevalError(
            f"{where} claims {header.describe()} but the {holder} holds "
            f"{human_bytes(max(available, 0))}: truncated or damaged "
            f"(expected {header.nbytes} bytes of array data)"
        )


def check_npy(path: str | os.PathLike[str]) -> NpyHeader:
    """The header of the ``.npy`` file ``path``, checked against the file size."""
    where = shown(path)
    try:
        with open(path, "rb") as f:
            header = read_npy_header(f, where, "NumPy array file")
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise FidevalError(f"{where}: cannot read ({shown(exc.strerror or exc)})") from None
    check_claim(header, size - header.header_size, where, holder="file")
    return header


def zip_member_size(info: zipfile.ZipInfo, archive_size: int, where: str) -> int:
    """The uncompressed size of a zip member, refused if the archive cannot hold it.

    A stored member's bytes must lie inside the archive; a deflated member cannot
    expand more than :data:`DEFLATE_MAX_RATIO` times; other methods are refused.
    """
    if info.flag_bits & 0x1:
        raise FidevalError(f"{where}: the zip member is encrypted")
    if info.compress_size > archive_size:
        raise FidevalError(
            f"{where}: the zip directory says the member has {human_bytes(info.compress_size)} "
            f"but the whole archive has {human_bytes(archive_size)}: truncated or damaged"
        )
    if info.compress_type == zipfile.ZIP_STORED:
        end = info.header_offset + info.compress_size
        if info.file_size != info.compress_size or end > archive_size:
            raise FidevalError(
                f"{where}: the zip directory claims {human_bytes(info.file_size)} for a stored "
                f"member that has {human_bytes(max(archive_size - info.header_offset, 0))} "
                "in the archive: truncated or damaged"
            )
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        limit = info.compress_size * DEFLATE_MAX_RATIO + _DEFLATE_SLACK
        if info.file_size > limit:
            raise FidevalError(
                f"{where}: the zip directory claims {human_bytes(info.file_size)} "
                f"uncompressed from {human_bytes(info.compress_size)} compressed, more than "
                "deflate can produce: damaged or hostile"
            )
    else:
        raise FidevalError(
            f"{where}: zip member compressed with method {info.compress_type}; expected "
            "stored or deflated members (what np.savez and np.savez_compressed write)"
        )
    return int(info.file_size)


def _member_name(names: list[str], key: str) -> str:
    return key + ".npy" if key + ".npy" in names else key


def check_npz(
    path: str | os.PathLike[str], keys: list[str] | set[str] | None = None
) -> dict[str, NpyHeader]:
    """Headers of the members ``keys`` (all ``*.npy`` members if ``None``) of an ``.npz``.

    Each claim is checked against the member's size (see the module doc); absent
    keys are skipped (the caller reports those). Raises before anything is allocated.
    """
    p = Path(path)
    try:
        archive_size = p.stat().st_size
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FidevalError(f"{shown(p)}: not a readable .npz archive ({shown(exc)})") from None
    headers: dict[str, NpyHeader] = {}
    with zf:
        names = zf.namelist()
        wanted = [n[:-4] for n in names if n.endswith(".npy")] if keys is None else list(keys)
        for key in wanted:
            name = _member_name(names, key)
            if name not in names:
                continue
            where = where_of(p, key)
            size = zip_member_size(zf.getinfo(name), archive_size, where)
            try:
                with zf.open(name) as member:
                    header = read_npy_header(member, where)
            except FidevalError:
                raise
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise FidevalError(
                    f"{where} is damaged: its header cannot be read ({shown(exc)})"
                ) from None
            check_claim(header, size - header.header_size, where)
            headers[key] = header
    return headers


def read_member(data: Any, path: str | os.PathLike[str], key: str, header: NpyHeader) -> np.ndarray:
    """``data[key]`` of an open :class:`numpy.lib.npyio.NpzFile` whose header was checked.

    A read that still fails (the data ends early, a bad CRC, a broken deflate stream)
    is reported as a truncated member, with the size the header promised.
    """
    try:
        return np.asarray(data[key])
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as exc:
        detail = shown(" ".join(str(exc).split())[:120])
        raise FidevalError(
            f"{where_of(path, key)} is truncated or damaged (expected {header.nbytes} bytes "
            f"for {header.describe()}; {detail})"
        ) from None
