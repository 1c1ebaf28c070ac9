"""The weights store: find, download (verified, atomically) and load network weights.

The FID Inception weights are pytorch-fid's port of TensorFlow's
``inception-2015-12-05`` graph, ``pt_inception-2015-12-05-6726825d.pth``; the
last part of the name is the start of the file's SHA-256. They are looked up,
in this order:

1. an explicit path (``--weights FILE``, ``weights=``);
2. the folder named by the environment variable ``FIDEVAL_WEIGHTS_DIR``;
3. the user cache, ``$XDG_CACHE_HOME/fideval`` or ``~/.cache/fideval``;
4. torch hub's checkpoint folder (``torch.hub.get_dir()/checkpoints``), where
   pytorch-fid caches the same file.

When none holds the file it is downloaded (unless offline: ``download=False``
or ``FIDEVAL_OFFLINE=1``) into ``FIDEVAL_WEIGHTS_DIR`` or the user cache; its
SHA-256 is checked against the name and the file is written atomically. A file
passed explicitly with another hash is used, with a warning and its full hash
in the provenance: its scores are not comparable with published FIDs. A file
found by name in a cache folder with the wrong hash is an error (a corrupt or
foreign file must not pass silently as the standard weights).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FidevalError
from .atomic import atomic_write

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_NAME
)
FID_WEIGHTS_SHA256_PREFIX = "6726825d"
ENV_DIR = "FIDEVAL_WEIGHTS_DIR"
ENV_OFFLINE = "FIDEVAL_OFFLINE"
DOWNLOAD_TIMEOUT_S = 60.0

# The URL opener, a module attribute so that tests can replace it.
_urlopen = urllib.request.urlopen


@dataclass(frozen=True)
class WeightsFile:
    """A resolved weights file: where, its full SHA-256, and whether it is the standard file."""

    path: Path
    sha256: str
    official: bool
    found_in: str  # "explicit", "FIDEVAL_WEIGHTS_DIR", "user cache", "torch hub", "download"


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fideval"


def torch_hub_checkpoint_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs() -> list[tuple[str, Path]]:
    """The folders searched, in order, each with a label."""
    dirs: list[tuple[str, Path]] = []
    env = os.environ.get(ENV_DIR)
    if env:
        dirs.append((ENV_DIR, Path(env).expanduser()))
    dirs.append(("user cache", user_cache_dir()))
    dirs.append(("torch hub", torch_hub_checkpoint_dir()))
    return dirs


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """Full SHA-256 (hex) of a file; memoized on (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def _offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def _where_to_put(name: str) -> str:
    dirs = "; ".join(f"{p} ({label})" for label, p in search_dirs())
    return (
        f"download it by hand and put it in one of: {dirs}; "
        f"or set {ENV_DIR} to the folder holding it; or pass the file with --weights FILE"
    )


def resolve_weights(
    path: str | Path | None = None,
    *,
    name: str = FID_WEIGHTS_NAME,
    url: str = FID_WEIGHTS_URL,
    sha256_prefix: str = FID_WEIGHTS_SHA256_PREFIX,
    download: bool | None = None,
) -> WeightsFile:
    """Find the weights file (see the module doc for the order), downloading if allowed."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FidevalError(f"weights file {p} does not exist (given explicitly)")
        digest = sha256_file(p)
        official = digest.startswith(sha256_prefix)
        if not official:
            warnings.warn(
                f"weights file {p} has SHA-256 {digest}, not the standard {name} "
                f"(SHA-256 {sha256_prefix}...): scores made with it are not comparable "
                "with published FID values",
                UserWarning,
                stacklevel=2,
            )
        return WeightsFile(p, digest, official, "explicit")

    for label, folder in search_dirs():
        candidate = folder / name
        if candidate.is_file():
            digest = sha256_file(candidate)
            if not digest.startswith(sha256_prefix):
                raise FidevalError(
                    f"weights file {candidate} (found in the {label} folder) has SHA-256 "
                    f"{digest}, but its name promises {sha256_prefix}...: it is corrupt or "
                    "another file. Delete it to download it again, or pass it with "
                    "--weights FILE to use it anyway"
                )
            return WeightsFile(candidate, digest, True, label)

    if download is None:
        download = not _offline()
    if not download:
        raise FidevalError(
            f"weights file {name} was not found and downloads are off "
            f"({ENV_OFFLINE} or download=False); get it from {url} and {_where_to_put(name)}"
        )
    target_dir = Path(os.environ[ENV_DIR]).expanduser() if os.environ.get(ENV_DIR) else None
    target_dir = target_dir or user_cache_dir()
    target = download_weights(url, target_dir / name, sha256_prefix=sha256_prefix)
    return WeightsFile(target, sha256_file(target), True, "download")


class _HashMismatch(Exception):
    pass


def download_weights(url: str, target: str | Path, *, sha256_prefix: str) -> Path:
    """Download ``url`` to ``target``, verifying the SHA-256 prefix; atomic."""
    target = Path(target)
    try:
        response = _urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
    except Exception as exc:  # URLError, socket errors, SSL errors, timeouts
        raise FidevalError(
            f"weights file {target.name} is missing and could not be downloaded from {url} "
            f"({exc}); {_where_to_put(target.name)}"
        ) from exc
    h = hashlib.sha256()
    try:
        with response, atomic_write(target) as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
            if not h.hexdigest().startswith(sha256_prefix):
                raise _HashMismatch
    except _HashMismatch:
        raise FidevalError(
            f"download of {url} has SHA-256 {h.hexdigest()}, expected {sha256_prefix}...; "
            f"nothing was written. {_where_to_put(target.name)}"
        ) from None
    except OSError as exc:
        raise FidevalError(
            f"download of {url} to {target} failed ({exc}); {_where_to_put(target.name)}"
        ) from exc
    return target


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on the CPU, errors naming the file."""
    import torch

    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FidevalError(f"cannot load weights file {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise FidevalError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return state
