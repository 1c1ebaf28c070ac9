"""Atomic file writes: a kill leaves the old file or the new one, never half of one.

The data goes to a temporary file in the destination's folder (same filesystem), is
flushed and fsync'ed, then renamed over the destination with :func:`os.replace`, and
the folder is fsync'ed so the rename itself is durable.

Three details make this hold up under ``kill -9`` and on shared folders:

* **Names.** A temporary file is ``.<name>.<random>.tmp``: hidden, and never ending in
  the destination's suffix, so no glob for ``*.npz`` (or ``*.partial.npz``) picks one
  up as a real file.
* **Orphans.** A writer holds an exclusive :func:`fcntl.flock` on its temporary file
  until the rename is done. The kernel drops that lock when the process dies, even by
  SIGKILL, so the next write to the same destination can tell an orphan (lockable)
  from a file a live writer is still filling (locked) and removes only orphans.
* **Mode.** The temporary file is created with ``os.open(..., 0o666)``, exactly as a
  plain ``open(path, "w")`` creates a file, so the kernel applies the process umask
  (and any default ACL of the folder) at creation. The umask is never read or set:
  ``os.umask`` can only be read by setting it, which races with other threads, and
  the kernel's own application of it is atomic. (:func:`tempfile.mkstemp` would give
  0600 whatever the umask, making shared statistics unreadable to colleagues.)
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .._text import shown
from ..errors import FidevalError

try:  # POSIX; without it (Windows) there is no locking and no orphan removal
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_FLAGS |= getattr(os, "O_BINARY", 0)
#: Random part of a temporary name: ours (12 hex digits) or tempfile.mkstemp's (8 of
#: [a-z0-9_], what fideval used before), so orphans of either are recognised.
_RANDOM = r"(?:[0-9a-f]{12}|[a-z0-9_]{8})"


def temp_name(target: Path) -> str:
    """A fresh temporary name for ``target``: ``.<name>.<12 hex digits>.tmp``."""
    return f".{target.name}.{secrets.token_hex(6)}.tmp"


def is_temp_name(name: str, target_name: str) -> bool:
    """Whether ``name`` is a temporary file of :func:`atomic_write` for ``target_name``."""
    return re.fullmatch(rf"\.{re.escape(target_name)}\.{_RANDOM}\.tmp", name) is not None


def _same_file(path: str, fd: int) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _create_locked_temp(folder: Path, target: Path) -> tuple[int, str]:
    """Create and lock a new temporary file next to ``target``; returns (fd, path).

    Between ``os.open`` and ``flock`` another writer's orphan sweep may take the file
    for an orphan and remove it; the check after locking sees that, and a new name is
    tried. Once locked, the file cannot be swept.
    """
    for _ in range(100):
        tmp = str(folder / temp_name(target))
        try:
            fd = os.open(tmp, _FLAGS, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        if fcntl is None:  # pragma: no cover
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks only while a sweeper holds it briefly
        if _same_file(tmp, fd):
            return fd, tmp
        os.close(fd)  # swept between creation and locking: try again
    raise FidevalError(f"{target}: could not create a temporary file in {folder}")


def remove_orphans(target: str | os.PathLike[str]) -> list[str]:
    """Remove temporary files of ``target`` left by writers that died (e.g. ``kill -9``).

    Only files that no live process holds locked are removed, so a concurrent writer of
    the same destination is never disturbed. Returns the names removed.
    """
    target = Path(target)
    if fcntl is None:  # pragma: no cover
        return []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    removed = []
    for name in names:
        if not is_temp_name(name, target.name):
            continue
        path = str(target.parent / name)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue  # gone already (renamed into place), or not ours to open
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer holds it
            if _same_file(path, fd):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed.append(name)
        finally:
            os.close(fd)
    return removed


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that :func:`atomic_write` can write ``path``.

    The nearest existing folder above ``path`` must be a folder in which a file can be
    created (probed by creating and removing a temporary file, which is what a write
    will do: permission bits alone do not tell, e.g. for root or on ``/proc``), and
    ``path`` itself must not be a folder. Returns ``path`` as a :class:`Path`; raises
    :class:`~fideval.errors.FidevalError` naming the path and the reason.
    """
    target = Path(path)
    if target.is_dir():
        raise FidevalError(f"{shown(target)}: is a folder; expected a file name")
    if target.exists() and not target.is_file():
        raise FidevalError(
            f"{shown(target)}: exists and is not a regular file (a device, pipe or socket); "
            "expected a file name to write"
        )
    folder = target.parent
    while not folder.exists():
        if folder.is_symlink():  # a dangling link: mkdir would fail
            raise FidevalError(f"{target}: cannot create folder {folder} (a broken link)")
        folder = folder.parent
    if not folder.is_dir():
        raise FidevalError(f"{target}: cannot create folder {target.parent}: {folder} is a file")
    probe = str(folder / temp_name(target))
    try:
        fd = os.open(probe, _FLAGS, 0o666)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise FidevalError(f"{target}: cannot write in folder {folder} ({reason})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return target


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left untouched; after
    a kill the temporary file is removed by the next write to ``path``. The new file
    gets the mode a plain ``open()`` would give it (0666 minus the umask).
    """
    target = Path(path)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    remove_orphans(target)
    fd, tmp = _create_locked_temp(folder, target)
    try:
        # The lock lives as long as this descriptor: keep it open until the rename is
        # done, or a sweep could take the finished file for an orphan. (Without locks,
        # i.e. on Windows, close first: an open file cannot be renamed there.)
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
            if fcntl is None:  # pragma: no cover
                fh.close()
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)
