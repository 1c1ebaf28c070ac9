"""The weights store: find, download (verified, atomically) and load network weights.

The FID Inception weights are pytorch-fid's port of TensorFlow's
``inception-2015-12-05`` graph, ``pt_inception-2015-12-05-6726825d.pth``; the
last part of the name is the start of the file's SHA-256. They are looked up,
in this order:

1. an explicit path (``--weights FILE``, ``weights=``);
2. the folder named by the environment variable ``FIDEVAL_WEIGHTS_DIR``;
3. the user cache, ``$XDG_CACHE_HOME/fideval`` or ``~/.cache/fideval``;
4. torch hub's checkpoint folder (``torch.hub.get_dir()/checkpoints``), where
   pytorch-fid caches the same file;
5. folders other tools keep the same file in, given per file with
   ``extra_dirs=`` (none for the Inception file). The DINOv2 and CLIP extractors
   add :func:`dnnlib_checkpoint_dir` (EDM2's torch hub folder,
   ``$DNNLIB_CACHE_DIR/torch_hub/checkpoints`` or
   ``~/.cache/dnnlib/torch_hub/checkpoints``), :func:`clip_cache_dir`
   (``~/.cache/clip``, where OpenAI's ``clip.load`` keeps its archives) and
   :func:`scenic_clip_cache_dir` (``~/.cache/scenic/clip``, where the original
   CMMD keeps its ``.npy`` conversion).

When none holds the file it is downloaded (unless offline: ``download=False``
or ``FIDEVAL_OFFLINE=1``) into ``FIDEVAL_WEIGHTS_DIR`` or the user cache; its
SHA-256 is checked against the name and the file is written atomically. A file
passed explicitly with another hash is used, with a warning and its full hash
in the provenance: its scores are not comparable with published FIDs. A file
found by name in a cache folder with the wrong hash is an error (a corrupt or
foreign file must not pass silently as the standard weights).

Files whose published SHA-256 is not known (the DINOv2 checkpoints: Meta
publishes no hash, and the name carries none) are resolved with
``sha256_prefix=None``: nothing can be verified, so the file found by its name
(or downloaded) is used as it is, ``official`` is ``None`` ("unknown") and its
full SHA-256 is what the provenance records, so that two statistics made with
different files are never compared.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._text import shown
from ..errors import FidevalError
from .atomic import atomic_write
from .npyheader import human_bytes, zip_member_size

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
    #: True: the hash matches the published one; False: it does not (an explicit
    #: file); None: no published hash is known (``sha256_prefix=None``).
    official: bool | None
    #: "explicit", "FIDEVAL_WEIGHTS_DIR", "user cache", "torch hub", a label of
    #: ``extra_dirs``, or "download".
    found_in: str


def cache_home() -> Path:
    """``$XDG_CACHE_HOME``, else ``~/.cache``: the base of every cache fideval uses."""
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"))


def user_cache_dir() -> Path:
    return cache_home() / "fideval"


def torch_hub_checkpoint_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _home_cache() -> Path:
    return Path(os.path.expanduser("~")) / ".cache"


def dnnlib_checkpoint_dir() -> Path:
    """EDM2's torch hub checkpoints: ``$DNNLIB_CACHE_DIR/torch_hub/checkpoints``, else
    ``~/.cache/dnnlib/torch_hub/checkpoints`` (where its DINOv2 file lands)."""
    env = os.environ.get("DNNLIB_CACHE_DIR")
    base = Path(env).expanduser() if env else _home_cache() / "dnnlib"
    return base / "torch_hub" / "checkpoints"


def clip_cache_dir() -> Path:
    """``~/.cache/clip``: where OpenAI's ``clip.load`` keeps ``ViT-L-14-336px.pt``."""
    return _home_cache() / "clip"


def scenic_clip_cache_dir() -> Path:
    """``~/.cache/scenic/clip``: where the original CMMD (scenic) keeps ``vit_l14_336px.npy``."""
    return _home_cache() / "scenic" / "clip"


def search_dirs(extra_dirs: Sequence[tuple[str, Path]] = ()) -> list[tuple[str, Path]]:
    """The folders searched, in order, each with a label; ``extra_dirs`` come last."""
    dirs: list[tuple[str, Path]] = []
    env = os.environ.get(ENV_DIR)
    if env:
        dirs.append((ENV_DIR, Path(env).expanduser()))
    dirs.append(("user cache", user_cache_dir()))
    dirs.append(("torch hub", torch_hub_checkpoint_dir()))
    seen = {p for _, p in dirs}
    for label, folder in extra_dirs:
        folder = Path(folder).expanduser()
        if folder not in seen:
            dirs.append((label, folder))
            seen.add(folder)
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


def _where_to_put(name: str, extra_dirs: Sequence[tuple[str, Path]] = ()) -> str:
    dirs = "; ".join(f"{shown(p)} ({label})" for label, p in search_dirs(extra_dirs))
    return (
        f"download it by hand and put it in one of: {dirs}; "
        f"or set {ENV_DIR} to the folder holding it; or pass the file as weights= (--weights FILE)"
    )


def find_weights(
    name: str,
    *,
    sha256_prefix: str | None = FID_WEIGHTS_SHA256_PREFIX,
    extra_dirs: Sequence[tuple[str, Path]] = (),
) -> WeightsFile | None:
    """The file ``name`` in the first search folder holding it, or ``None`` (no download).

    With a known ``sha256_prefix`` a file found by name with another hash is an
    error; with ``sha256_prefix=None`` it is used as found (``official=None``).
    """
    for label, folder in search_dirs(extra_dirs):
        candidate = folder / name
        if candidate.is_file():
            digest = sha256_file(candidate)
            if sha256_prefix is None:
                return WeightsFile(candidate, digest, None, label)
            if not digest.startswith(sha256_prefix):
                raise FidevalError(
                    f"weights file {shown(candidate)} (found in the {label} folder) has SHA-256 "
                    f"{digest}, but the standard {name} has {sha256_prefix}...: it is "
                    "corrupt or another file. Delete it to download it again, or pass it "
                    "as weights= (--weights FILE) to use it anyway"
                )
            return WeightsFile(candidate, digest, True, label)
    return None


def resolve_weights(
    path: str | Path | None = None,
    *,
    name: str = FID_WEIGHTS_NAME,
    url: str = FID_WEIGHTS_URL,
    sha256_prefix: str | None = FID_WEIGHTS_SHA256_PREFIX,
    download: bool | None = None,
    extra_dirs: Sequence[tuple[str, Path]] = (),
    purpose: str = "FID",
) -> WeightsFile:
    """Find the weights file (see the module doc for the order), downloading if allowed.

    ``sha256_prefix``: the start (or all) of the published SHA-256 of ``name``, or
    ``None`` where none is published (then nothing is verified and the file's own
    SHA-256 identifies it). ``extra_dirs``: ``(label, folder)`` pairs searched after
    the standard folders. ``purpose`` names the scores in the warning about a file
    with another hash (``"FID"``, ``"FD_DINOv2"``, ``"CMMD"``).
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FidevalError(f"weights file {shown(p)} does not exist (given explicitly)")
        digest = sha256_file(p)
        official: bool | None = None
        if sha256_prefix is not None:
            official = digest.startswith(sha256_prefix)
            if not official:
                warnings.warn(
                    f"weights file {shown(p)} has SHA-256 {digest}, not the standard {name} "
                    f"(SHA-256 {sha256_prefix[:8]}...): scores made with it are not "
                    f"comparable with published {purpose} values",
                    UserWarning,
                    stacklevel=2,
                )
        return WeightsFile(p, digest, official, "explicit")

    found = find_weights(name, sha256_prefix=sha256_prefix, extra_dirs=extra_dirs)
    if found is not None:
        return found

    if download is None:
        download = not _offline()
    if not download:
        raise FidevalError(
            f"weights file {name} was not found and downloads are off "
            f"({ENV_OFFLINE} or download=False); get it from {shown(url)} and "
            f"{_where_to_put(name, extra_dirs)}"
        )
    target_dir = Path(os.environ[ENV_DIR]).expanduser() if os.environ.get(ENV_DIR) else None
    target_dir = target_dir or user_cache_dir()
    target = download_weights(
        url, target_dir / name, sha256_prefix=sha256_prefix, extra_dirs=extra_dirs
    )
    return WeightsFile(
        target, sha256_file(target), None if sha256_prefix is None else True, "download"
    )


class _HashMismatch(Exception):
    pass


def download_weights(
    url: str,
    target: str | Path,
    *,
    sha256_prefix: str | None,
    extra_dirs: Sequence[tuple[str, Path]] = (),
) -> Path:
    """Download ``url`` to ``target``, verifying the SHA-256 prefix (if known); atomic."""
    target = Path(target)
    where = _where_to_put(target.name, extra_dirs)
    try:
        response = _urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
    except Exception as exc:  # URLError, socket errors, SSL errors, timeouts
        raise FidevalError(
            f"weights file {shown(target.name)} is missing and could not be downloaded from "
            f"{shown(url)} ({shown(exc)}); {where}"
        ) from exc
    h = hashlib.sha256()
    try:
        with response, atomic_write(target) as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
            if sha256_prefix is not None and not h.hexdigest().startswith(sha256_prefix):
                raise _HashMismatch
    except _HashMismatch:
        raise FidevalError(
            f"download of {shown(url)} has SHA-256 {h.hexdigest()}, expected {sha256_prefix}...; "
            f"nothing was written. {where}"
        ) from None
    except OSError as exc:
        raise FidevalError(
            f"download of {shown(url)} to {shown(target)} failed ({shown(exc)}); {where}"
        ) from exc
    return target


def _one_line(text: str, limit: int = 200) -> str:
    """The first line of an exception text (whitespace collapsed, ANSI codes dropped,
    other control characters escaped)."""
    line = next((ln for ln in str(text).splitlines() if ln.strip()), "")
    line = " ".join(line.replace("\x1b[1m", "").replace("\x1b[0m", "").split())
    line = shown(line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript zip (it holds ``*/constants.pkl`` or ``*/code/``)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


#: What torch's weights-only unpickler says when a pickle needs a global it refuses.
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|reduce for (?:unrecognized function )?([\w.<>]+)")


def _torch_refusal(text: str) -> str:
    """The part of torch's UnpicklingError text that says what was wrong, one line.

    torch wraps the cause in advice to turn ``weights_only`` off; fideval never gives
    that advice, so every paragraph mentioning ``weights_only`` or the documentation
    is dropped.
    """
    paragraphs = [p for p in re.split(r"\n\s*\n", str(text)) if p.strip()]
    kept = [
        p
        for p in paragraphs
        if "weights_only" not in p
        and "Weights only load failed" not in p
        and "Check the documentation" not in p
    ]
    detail = kept[0] if kept else "refused by the weights-only unpickler"
    return _one_line(detail.replace("WeightsUnpickler error:", "").strip())


def _check_zip_claims(path: Path) -> None:
    """Refuse a zip whose directory claims members larger than the archive can hold.

    torch reads each record into a buffer of the size the directory states; the
    check is cheap (the directory only). Files that are not zips are left to torch.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            size = path.stat().st_size
            for info in zf.infolist():
                zip_member_size(info, size, f"weights file {shown(path)}: {shown(info.filename)}")
    except (zipfile.BadZipFile, OSError):
        return


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on the CPU; every error is one line naming
    the file (not a torch file, a refused global, a TorchScript archive, no dict)."""
    import pickle

    import torch

    where = f"weights file {shown(path)}"
    if is_torchscript_archive(path):  # torch.load would hand it to torch.jit.load
        raise FidevalError(
            f"{where} is a TorchScript archive, not a state dict; its tensors are read by "
            "the extractor that expects one (clip-vitl14-336), never by running its code"
        )
    _check_zip_claims(Path(path))
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        m = _REFUSED_GLOBAL.search(" ".join(str(exc).split()))
        if m:
            raise FidevalError(
                f"{where} refuses to load: it needs the global {shown(m.group(1) or m.group(2))}, "
                "which is not allowed (fideval reads weights with torch.load(weights_only=True): "
                "tensors and plain containers only); save a plain state dict of tensors"
            ) from None
        raise FidevalError(
            f"{where} is not a PyTorch weights file (torch.load: {_torch_refusal(str(exc))})"
        ) from None
    except OSError as exc:
        raise FidevalError(f"cannot read {where}: {_one_line(str(exc))}") from None
    except Exception as exc:
        what = type(exc).__name__
        if isinstance(exc, EOFError):
            what = "empty or truncated"
        elif _one_line(str(exc)):
            what += ": " + _one_line(str(exc))
        raise FidevalError(f"{where} is not a PyTorch weights file (torch.load: {what})") from None
    if not isinstance(state, dict):
        raise FidevalError(f"{where} holds a {type(state).__name__}, not a state dict")
    return state


def state_dict_sha256(state: Mapping[str, Any]) -> str:
    """A SHA-256 identifying a state dict given in memory (no file to hash).

    Hashes, for each key in sorted order: the key, the tensor's dtype, its shape
    and its bytes (contiguous, on the CPU). It is not the hash of any file, so
    statistics made from a dict never pass for ones made from the published file.
    """
    import torch

    h = hashlib.sha256(b"fideval-state-dict-v1\0")
    for key in sorted(state):
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise FidevalError(
                f"state dict entry {key!r} is a {type(value).__name__}, expected a tensor"
            )
        t = value.detach().to("cpu").contiguous()
        h.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# --------------------------------------------------------------------------- TorchScript archives

_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


class _ScriptObject:
    """Stand-in for a TorchScript object (``__torch__.…``): holds its pickled state only."""

    qualname = "?"

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _read_storage(
    zf: Any, member: str, numel: Any, dtype: Any, archive_size: int, where: str
) -> Any:
    """One storage of a TorchScript archive: ``numel`` elements of ``dtype`` from ``member``.

    The size the pickle claims is compared with the member's size (from the zip
    directory, itself checked against the archive) before anything is allocated.
    """
    import torch

    what = f"{where}: tensor data {shown(member)}"
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise FidevalError(f"{what} has element count {shown(repr(numel)[:40])}")
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise FidevalError(f"{what} is missing") from None
    size = zip_member_size(info, archive_size, what)
    itemsize = torch.empty((), dtype=dtype).element_size()
    want = numel * itemsize
    if want != size:
        raise FidevalError(
            f"{what}: data.pkl claims {numel} elements of {dtype} = {human_bytes(want)} but the "
            f"member holds {human_bytes(size)}: truncated or damaged"
        )
    buf = bytearray(want)
    got = 0
    with zf.open(member) as f:
        view = memoryview(buf)
        while got < want:
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
    if got < want:
        raise FidevalError(f"{what} has {got} bytes, expected {want} (truncated archive?)")
    if not buf:
        return torch.empty(0, dtype=dtype)
    return torch.frombuffer(buf, dtype=torch.uint8).view(dtype)


def read_torchscript_tensors(path: str | Path) -> dict[str, Any]:
    """The tensors of a TorchScript archive by dotted attribute name, without running it.

    A TorchScript file is a zip holding ``<root>/data.pkl`` (the module tree, pickled:
    each module an object of a ``__torch__.…`` class whose state is a dict of its
    attributes), its tensors' bytes in ``<root>/data/<key>`` and the TorchScript code
    in ``<root>/code/``. This reads ``data.pkl`` with an unpickler that resolves only
    tensor rebuilding (``torch._utils._rebuild_tensor_v2``, ``_rebuild_parameter``),
    storage types, ``collections.OrderedDict``, TorchScript's typed-list helpers and
    plain builtins; every ``__torch__`` class becomes an inert stand-in. No code of
    the archive is compiled or run (``torch.jit.load`` would compile it).

    Returns ``{"visual.conv1.weight": tensor, …}`` for every tensor-valued attribute
    of every module (parameters and buffers; TorchScript keeps no other tensor
    attributes), each in its stored dtype on the CPU.
    """
    import io
    import pickle
    import zipfile

    import torch

    p = Path(path)
    where = shown(p)
    try:
        archive_size = p.stat().st_size
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FidevalError(
            f"{where} is not a TorchScript archive (not a zip file: {shown(exc)})"
        ) from None
    with zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkls:
            raise FidevalError(
                f"{where} is a zip without <root>/data.pkl: not a TorchScript archive"
            )
        root = pkls[0][: -len("data.pkl")]
        zip_member_size(zf.getinfo(pkls[0]), archive_size, f"{where}: {shown(pkls[0])}")
        if root + "byteorder" in names:
            with zf.open(root + "byteorder") as fh:
                order = fh.read(16).decode("ascii", "replace").strip()
            if order != "little":
                raise FidevalError(
                    f"{where}: tensors stored {shown(order)}-endian; only little supported"
                )
        storages: dict[str, Any] = {}

        def storage_dtype(name: str) -> Any:
            return getattr(torch, _STORAGE_DTYPES[name])

        def load_storage(pid: Any) -> Any:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                raise FidevalError(
                    f"{where}: unexpected persistent id {shown(str(pid)[:80])} in data.pkl"
                )
            _, dtype, key, _location, numel = pid
            if not isinstance(dtype, torch.dtype):
                raise FidevalError(
                    f"{where}: storage {shown(key)} has no known dtype ({shown(repr(dtype))})"
                )
            if key not in storages:
                storages[key] = _read_storage(
                    zf, f"{root}data/{key}", numel, dtype, archive_size, where
                )
            return storages[key]

        def rebuild_tensor(storage, offset, size, stride, *_rest):  # type: ignore[no-untyped-def]
            return torch.as_strided(storage, tuple(size), tuple(stride), int(offset))

        def rebuild_parameter(data, *_rest):  # type: ignore[no-untyped-def]
            return data

        def same(x, *_rest):  # type: ignore[no-untyped-def]
            return x

        classes: dict[str, type] = {}

        class Unpickler(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                if module == "__torch__" or module.startswith("__torch__."):
                    qual = f"{module}.{name}"
                    if qual not in classes:
                        classes[qual] = type(name, (_ScriptObject,), {"qualname": qual})
                    return classes[qual]
                if module == "torch._utils" and name == "_rebuild_tensor_v2":
                    return rebuild_tensor
                if module == "torch._utils" and name == "_rebuild_parameter":
                    return rebuild_parameter
                if module == "torch" and name in _STORAGE_DTYPES:
                    return storage_dtype(name)
                if module == "torch.jit._pickle" and (
                    name.startswith("build_") or name == "restore_type_tag"
                ):
                    return same
                if module == "collections" and name == "OrderedDict":
                    from collections import OrderedDict

                    return OrderedDict
                if module == "builtins" and name in (
                    "dict",
                    "list",
                    "tuple",
                    "set",
                    "int",
                    "float",
                    "bool",
                    "str",
                ):
                    import builtins

                    return getattr(builtins, name)
                raise FidevalError(
                    f"{where}: data.pkl needs the global {shown(module)}.{shown(name)}; "
                    "only TorchScript "
                    "module objects and tensors are read (no code from the archive is run)"
                )

            def persistent_load(self, pid: Any) -> Any:
                return load_storage(pid)

        try:
            top = Unpickler(io.BytesIO(zf.read(pkls[0]))).load()
        except FidevalError:
            raise
        except Exception as exc:
            raise FidevalError(
                f"{where}: cannot read {shown(pkls[0])} "
                f"({type(exc).__name__}: {_one_line(str(exc))})"
            ) from None

    out: dict[str, Any] = {}

    def walk(obj: Any, prefix: str) -> None:
        state = getattr(obj, "state", None)
        if not isinstance(state, dict):
            return
        for attr, value in state.items():
            if isinstance(value, torch.Tensor):
                out[prefix + str(attr)] = value
            elif isinstance(value, _ScriptObject):
                walk(value, f"{prefix}{attr}.")

    if not isinstance(top, _ScriptObject):
        raise FidevalError(
            f"{where}: data.pkl holds a {type(top).__name__}, not a TorchScript module"
        )
    walk(top, "")
    return out
