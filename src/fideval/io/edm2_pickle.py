"""Read EDM2's reference statistics (``img512.pkl``, …) without unpickling arbitrary objects.

EDM2 (``calculate_metrics.py ref``) writes its reference statistics with
:func:`pickle.dump` as a plain dict::

    {"num_images": int,
     "fid":       {"mu": float64 (2048,), "sigma": float64 (2048, 2048)},
     "fd_dinov2": {"mu": float64 (1024,), "sigma": float64 (1024, 1024)}}

with μ = Σf / N and Σ = (Σ fᵀf − N μμᵀ) / (N − 1) accumulated in float64, f being
FID's Inception pool_3 features (``fid``) or the DINOv2 ViT-L/14 CLS features of
the ``edm2`` profile (``fd_dinov2``, fideval's ``dinov2-vitl14``).

A pickle can run any code while it loads, so :func:`safe_load_pickle` uses a
restricted unpickler. The only globals it resolves are those numpy needs to
rebuild arrays (``numpy.core.multiarray._reconstruct`` and ``scalar``,
``numpy.core.numeric._frombuffer`` for protocol 5, also under numpy 2's
``numpy._core``; ``numpy.ndarray``; ``numpy.dtype``),
``collections.OrderedDict``, plain builtins (containers, numbers, strings) and
``_codecs.encode`` for latin-1 only (how protocol-2 pickles store bytes).
Any other global — a class, ``os.system``, ``builtins.eval`` — is refused with a
:class:`~fideval.errors.FidevalError` naming the file and the global, before
anything is called. The same reader serves the ``.npy`` file in which the
original CMMD keeps CLIP's weights (``np.save`` of a dict: a pickled 0-d object
array), see :func:`safe_load_npy_object`.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import FidevalError

__all__ = [
    "EDM2_METRIC_EXTRACTORS",
    "EDM2Reference",
    "read_edm2_reference",
    "safe_load_npy_object",
    "safe_load_pickle",
]

_NUMPY_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
_BUILTINS: dict[str, Any] = {
    "dict": dict,
    "list": list,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "int": int,
    "float": float,
    "complex": complex,
    "bool": bool,
    "str": str,
    "bytes": bytes,
    "bytearray": bytearray,
}


def _multiarray_global(name: str) -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2 (numpy.core warns there)
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return getattr(multiarray, name)


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it (str -> bytes), nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise FidevalError(f"unexpected _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _numeric_frombuffer() -> Any:
    try:
        from numpy._core import numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import numeric  # type: ignore[no-redef]
    return numeric._frombuffer


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only numpy's array/dtype/scalar rebuilding globals and plain builtins."""

    def __init__(self, file: IO[bytes], source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if module in _NUMPY_MULTIARRAY and name in ("_reconstruct", "scalar"):
            return _multiarray_global(name)
        if module in _NUMPY_NUMERIC and name == "_frombuffer":  # protocol 5 arrays
            return _numeric_frombuffer()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles
            return _latin1_encode
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return _BUILTINS[name]
        raise FidevalError(
            f"{self._source}: refused to unpickle the global {module}.{name}; only numpy "
            "arrays, dtypes and plain builtins (dict, list, numbers, strings) are allowed "
            "(a pickle can run code, so fideval unpickles nothing else)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise FidevalError(
            f"{self._source}: the pickle refers to an external object ({str(pid)[:80]}); "
            "a plain pickle of numpy arrays was expected"
        )


def _load(f: IO[bytes], source: str) -> Any:
    try:
        return _NumpyOnlyUnpickler(f, source).load()
    except FidevalError:
        raise
    except Exception as exc:  # truncated data, bad opcodes, bad array states
        detail = " ".join(str(exc).split())[:200]
        raise FidevalError(
            f"{source}: not a readable pickle ({type(exc).__name__}: {detail})"
        ) from None


def safe_load_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` allowing only numpy arrays, dtypes, scalars and builtins."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return _load(f, str(p))
    except OSError as exc:
        raise FidevalError(f"cannot read {p}: {exc}") from exc


def safe_load_npy_object(path: str | Path) -> Any:
    """The object stored by ``np.save(path, obj)`` for a non-array ``obj`` (a dict, say).

    Such a file is an ``.npy`` header for a 0-d ``object`` array followed by a
    pickle; the pickle is read with the restricted unpickler of
    :func:`safe_load_pickle`. Plain numeric ``.npy`` files are refused (use
    :func:`numpy.load`).
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            except ValueError as exc:
                raise FidevalError(
                    f"{p}: not a .npy file ({' '.join(str(exc).split())[:120]})"
                ) from None
            if dtype != np.dtype(object):
                raise FidevalError(
                    f"{p}: a .npy of dtype {dtype} and shape {shape}; expected a pickled "
                    "object (np.save of a dict)"
                )
            arr = _load(f, str(p))
    except OSError as exc:
        raise FidevalError(f"cannot read {p}: {exc}") from exc
    if not isinstance(arr, np.ndarray) or arr.dtype != object:
        raise FidevalError(f"{p}: the pickle holds a {type(arr).__name__}, not an object array")
    return arr.item() if arr.ndim == 0 else arr.tolist()


@dataclass(frozen=True)
class EDM2Reference:
    """EDM2 reference statistics: ``num_images`` and, per metric, ``(mu, sigma)`` float64.

    ``stats`` maps the metric name (``"fid"``, ``"fd_dinov2"``) to μ (d,) and Σ (d, d).
    """

    path: Path
    num_images: int | None
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def mu_sigma(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, sigma)`` of ``metric``; a FidevalError naming the file if it is absent."""
        try:
            return self.stats[metric]
        except KeyError:
            raise FidevalError(
                f"{self.path}: no statistics for {metric!r}; the file has {sorted(self.stats)}"
            ) from None


#: Which fideval feature space each EDM2 metric's statistics were made in.
EDM2_METRIC_EXTRACTORS = {
    "fid": ("inception-v3-fid", 2048),
    "fd_dinov2": ("dinov2-vitl14", 1024),
}


def read_edm2_reference(path: str | Path) -> EDM2Reference:
    """Read an EDM2 reference ``.pkl`` (see the module doc) safely and check its layout.

    Every top-level entry other than ``num_images`` must be a dict with ``mu``
    (d,) and ``sigma`` (d, d), finite; arrays are returned as float64. Errors name
    the file and the key.
    """
    p = Path(path)
    data = safe_load_pickle(p)
    if not isinstance(data, dict):
        raise FidevalError(
            f"{p}: holds a {type(data).__name__}; an EDM2 reference pickle is a dict "
            "{num_images, fid: {mu, sigma}, fd_dinov2: {mu, sigma}}"
        )
    num = data.get("num_images")
    if num is not None:
        if isinstance(num, np.ndarray) and num.ndim == 0:
            num = num.item()
        if isinstance(num, (bool, np.bool_)) or not isinstance(num, (int, np.integer)):
            raise FidevalError(f"{p}: 'num_images' is {num!r}, expected an integer")
        num = int(num)
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key, value in data.items():
        if key == "num_images":
            continue
        if not isinstance(value, dict) or "mu" not in value or "sigma" not in value:
            got = sorted(map(str, value)) if isinstance(value, dict) else type(value).__name__
            raise FidevalError(f"{p}: entry {key!r} is {got}; expected a dict with mu and sigma")
        mu = np.asarray(value["mu"])
        sigma = np.asarray(value["sigma"])
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise FidevalError(
                f"{p}: {key!r} has mu {mu.shape} and sigma {sigma.shape}; expected (d,) and (d, d)"
            )
        if mu.dtype.kind != "f" or sigma.dtype.kind != "f":
            raise FidevalError(
                f"{p}: {key!r} has mu {mu.dtype} and sigma {sigma.dtype}; expected floats"
            )
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise FidevalError(f"{p}: {key!r} has non-finite values in mu or sigma")
        stats[str(key)] = (mu.astype(np.float64), sigma.astype(np.float64))
    if not stats:
        raise FidevalError(f"{p}: no statistics found (keys {sorted(map(str, data))})")
    return EDM2Reference(path=p, num_images=num, stats=stats)
