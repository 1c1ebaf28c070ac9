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

Even the allowed globals are never handed a size to allocate. numpy's own
``_reconstruct`` would allocate whatever shape a pickle names, and
``bytearray(n)`` n zero bytes, so a 100-byte file could ask for gigabytes.
Instead:

* before anything is built, every length-prefixed opcode argument is checked
  against the bytes left in the file (:func:`pickletools.genops`, which builds
  nothing);
* ``_reconstruct`` returns an inert placeholder; the array is made from the
  state that follows (shape, dtype, data), only after its data was checked to be
  exactly ``prod(shape) * itemsize`` bytes read from the file. Its memory is
  then bounded by the file size;
* object dtypes are refused (their elements are arbitrary Python objects) —
  except the top-level 0-d object array of :func:`safe_load_npy_object`, whose
  element count is bounded by the file size too;
* ``bytes(n)`` and ``bytearray(n)`` with a number are refused.

Arrays made from ``bytes`` data are read-only views of those bytes (no second
copy); callers copy them (``astype``, ``np.array``) before changing them.
"""

from __future__ import annotations

import os
import pickle
import pickletools
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from .._text import shown
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
}
#: Built when called with a number, these allocate without data: see ``_sized``.
_SIZED = {"bytes": bytes, "bytearray": bytearray}


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


class _NdarrayType:
    """Stands for ``numpy.ndarray`` in a pickle: accepted by ``_reconstruct``, refused
    when called (``ndarray(shape)`` would allocate the shape)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise FidevalError(
            "the pickle calls numpy.ndarray(...) directly, which allocates the shape it "
            "names; refused"
        )


_NDARRAY = _NdarrayType()


class _ArrayStub:
    """What ``_reconstruct`` returns: inert until BUILD hands it the array's state."""

    __hash__ = None  # type: ignore[assignment]  # never a dict key or set member

    def __init__(self, unpickler: _NumpyOnlyUnpickler) -> None:
        self._unpickler = unpickler
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        self.array = self._unpickler.build_array(state)


def _count(shape: Any, where: str) -> int:
    """The element count of a pickled shape (a tuple of non-negative ints)."""
    if not isinstance(shape, tuple) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise FidevalError(f"{where}: an array with shape {shown(repr(shape)[:80])}")
    count = 1
    for s in shape:
        count *= s
    return count


class _Capped:
    """A file view for :func:`pickletools.genops` whose reads never ask past the end."""

    def __init__(self, f: IO[bytes], end: int) -> None:
        self._f = f
        self._end = end

    def read(self, n: int = -1) -> bytes:
        left = max(self._end - self._f.tell(), 0)
        return self._f.read(left if n is None or n < 0 else min(n, left))

    def readline(self) -> bytes:
        return self._f.readline(max(self._end - self._f.tell(), 0))

    def tell(self) -> int:
        return self._f.tell()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only numpy's array/dtype/scalar rebuilding globals and plain builtins.

    ``budget`` is the number of bytes the pickle has in the file: no array may claim
    more elements than that. ``allow_objects`` admits object arrays (their element
    count is bounded by the budget) for :func:`safe_load_npy_object`.
    """

    def __init__(
        self, file: IO[bytes], source: str, budget: int, *, allow_objects: bool = False
    ) -> None:
        super().__init__(file)
        self._where = shown(source)
        self._budget = budget
        self._allow_objects = allow_objects

    # ------------------------------------------------------------------ globals
    def find_class(self, module: str, name: str) -> Any:
        if module in _NUMPY_MULTIARRAY and name == "_reconstruct":
            return self._reconstruct
        if module in _NUMPY_MULTIARRAY and name == "scalar":
            return self._scalar
        if module in _NUMPY_NUMERIC and name == "_frombuffer":  # protocol 5 arrays
            return self._frombuffer
        if module == "numpy" and name == "ndarray":
            return _NDARRAY
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles
            return _latin1_encode
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return _BUILTINS[name]
        if module in ("builtins", "__builtin__") and name in _SIZED:
            return self._sized(_SIZED[name])
        raise FidevalError(
            f"{self._where}: refused to unpickle the global {shown(module)}.{shown(name)}; "
            "only numpy arrays, dtypes and plain builtins (dict, list, numbers, strings) "
            "are allowed (a pickle can run code, so fideval unpickles nothing else)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise FidevalError(
            f"{self._where}: the pickle refers to an external object "
            f"({shown(str(pid)[:80])}); a plain pickle of numpy arrays was expected"
        )

    # ------------------------------------------------------------------ checked builders
    def _sized(self, kind: type) -> Any:
        def make(*args: Any) -> Any:
            if args and isinstance(args[0], int):
                raise FidevalError(
                    f"{self._where}: the pickle calls {kind.__name__}({args[0]}), which "
                    "allocates memory without data; refused"
                )
            return kind(*args)

        return make

    def _dtype(self, dtype: Any) -> np.dtype:
        if not isinstance(dtype, np.dtype):
            raise FidevalError(f"{self._where}: an array with dtype {shown(repr(dtype)[:80])}")
        if dtype.hasobject and not (self._allow_objects and dtype == np.dtype(object)):
            raise FidevalError(
                f"{self._where}: holds an array of Python objects (dtype {dtype}); refused: "
                "statistics are numeric arrays"
            )
        return dtype

    def _claim(self, count: int, itemsize: int) -> None:
        if count > self._budget or count * itemsize > self._budget:
            raise FidevalError(
                f"{self._where}: an array claims {count} elements"
                + (f" of {itemsize} bytes" if itemsize else "")
                + f" but the file holds {self._budget} bytes of pickle; refused before allocating"
            )

    def _reconstruct(self, subtype: Any, shape: Any, typecode: Any) -> _ArrayStub:
        if subtype is not _NDARRAY:
            raise FidevalError(f"{self._where}: _reconstruct of {type(subtype).__name__}")
        self._claim(_count(shape, self._where), 0)
        return _ArrayStub(self)

    def build_array(self, state: Any) -> np.ndarray:
        """The array of a ``_reconstruct`` placeholder from its pickled state."""
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise FidevalError(f"{self._where}: an array with a malformed state")
        shape, dtype, fortran, raw = state[-4:]
        count = _count(shape, self._where)
        dtype = self._dtype(dtype)
        order = "F" if fortran else "C"
        self._claim(count, dtype.itemsize)
        if dtype.hasobject:
            if not isinstance(raw, list) or len(raw) != count:
                raise FidevalError(f"{self._where}: an object array whose items do not match")
            flat = np.empty(count, dtype=object)
            for i, item in enumerate(raw):
                flat[i] = item
            return flat.reshape(shape, order=order)
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != count * dtype.itemsize:
            got = len(raw) if isinstance(raw, (bytes, bytearray)) else type(raw).__name__
            raise FidevalError(
                f"{self._where}: an array of shape {shape} {dtype} with {got} bytes of data; "
                f"expected {count * dtype.itemsize}"
            )
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape, order=order)

    def _frombuffer(self, buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        dtype = self._dtype(dtype)
        count = _count(shape, self._where)
        self._claim(count, dtype.itemsize)
        if not isinstance(buf, (bytes, bytearray)) or len(buf) != count * dtype.itemsize:
            raise FidevalError(
                f"{self._where}: an array of shape {shape} {dtype} whose buffer does not match"
            )
        if order not in ("C", "F"):
            raise FidevalError(f"{self._where}: an array with order {shown(repr(order)[:20])}")
        return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape, order=order)

    def _scalar(self, dtype: Any, data: Any = None) -> Any:
        dtype = self._dtype(dtype)
        if dtype.hasobject or not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise FidevalError(f"{self._where}: a numpy scalar of {dtype} with malformed data")
        return _multiarray_global("scalar")(dtype, data)


def _resolve(obj: Any, seen: dict[int, Any]) -> Any:
    """``obj`` with every :class:`_ArrayStub` replaced by its array (containers walked)."""
    key = id(obj)
    if key in seen:
        return seen[key]
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise FidevalError("an array placeholder was never given its data")
        out: Any = _resolve(obj.array, seen) if obj.array.dtype.hasobject else obj.array
    elif isinstance(obj, dict):
        seen[key] = obj
        for k in list(obj):
            obj[k] = _resolve(obj[k], seen)
        return obj
    elif isinstance(obj, list):
        seen[key] = obj
        obj[:] = [_resolve(v, seen) for v in obj]
        return obj
    elif isinstance(obj, tuple):
        out = tuple(_resolve(v, seen) for v in obj)
    elif isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        seen[key] = obj
        flat = obj.reshape(-1, order="A")
        for i in range(flat.size):
            flat[i] = _resolve(flat[i], seen)
        return obj
    else:
        return obj
    seen[key] = out
    return out


def _check_opcodes(f: IO[bytes], end: int, where: str) -> None:
    """Walk the opcodes from ``f``'s position without building anything.

    Every length-prefixed argument (bytes, strings) must fit in the ``end - start``
    bytes left; a truncated or malformed stream is refused here, before the unpickler
    could allocate the lengths it names. Leaves ``f`` where it started.
    """
    start = f.tell()
    try:
        for _ in pickletools.genops(_Capped(f, end)):
            pass
    except Exception as exc:  # ValueError: short data, unknown opcode, bad argument
        detail = shown(" ".join(str(exc).split())[:200])
        raise FidevalError(
            f"{where}: not a readable pickle ({type(exc).__name__}: {detail})"
        ) from None
    finally:
        f.seek(start)


def _load(f: IO[bytes], source: str, *, allow_objects: bool = False) -> Any:
    """Check, then unpickle, the pickle at ``f``'s position (it runs to the file's end)."""
    where = shown(source)
    end = os.fstat(f.fileno()).st_size
    _check_opcodes(f, end, where)
    budget = end - f.tell()
    try:
        obj = _NumpyOnlyUnpickler(f, source, budget, allow_objects=allow_objects).load()
        return _resolve(obj, {})
    except FidevalError as exc:
        if str(exc).startswith(where):
            raise
        raise FidevalError(f"{where}: {exc}") from None
    except Exception as exc:  # truncated data, bad opcodes, bad array states
        detail = shown(" ".join(str(exc).split())[:200])
        raise FidevalError(
            f"{where}: not a readable pickle ({type(exc).__name__}: {detail})"
        ) from None


def safe_load_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` allowing only numpy arrays, dtypes, scalars and builtins.

    Object arrays are refused; every size the pickle claims is checked against the
    file size before anything is allocated (see the module doc).
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return _load(f, str(p))
    except OSError as exc:
        raise FidevalError(f"cannot read {shown(p)}: {shown(exc.strerror or exc)}") from exc


def safe_load_npy_object(path: str | Path) -> Any:
    """The object stored by ``np.save(path, obj)`` for a non-array ``obj`` (a dict, say).

    Such a file is an ``.npy`` header for a 0-d ``object`` array followed by a
    pickle; the pickle is read with the restricted unpickler of
    :func:`safe_load_pickle` (the top-level object array allowed, its size checked).
    Plain numeric ``.npy`` files are refused (use :func:`numpy.load`).
    """
    from .npyheader import read_npy_header

    p = Path(path)
    try:
        with open(p, "rb") as f:
            header = read_npy_header(f, shown(p))
            if header.dtype != np.dtype(object):
                raise FidevalError(
                    f"{shown(p)}: a .npy of dtype {header.dtype} and shape {header.shape}; "
                    "expected a pickled object (np.save of a dict)"
                )
            arr = _load(f, str(p), allow_objects=True)
    except OSError as exc:
        raise FidevalError(f"cannot read {shown(p)}: {shown(exc.strerror or exc)}") from exc
    if not isinstance(arr, np.ndarray) or arr.dtype != object:
        raise FidevalError(
            f"{shown(p)}: the pickle holds a {type(arr).__name__}, not an object array"
        )
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
                f"{shown(self.path)}: no statistics for {metric!r}; the file has "
                f"{sorted(self.stats)}"
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
            f"{shown(p)}: holds a {type(data).__name__}; an EDM2 reference pickle is a dict "
            "{num_images, fid: {mu, sigma}, fd_dinov2: {mu, sigma}}"
        )
    num = data.get("num_images")
    if num is not None:
        if isinstance(num, np.ndarray) and num.ndim == 0:
            num = num.item()
        if isinstance(num, (bool, np.bool_)) or not isinstance(num, (int, np.integer)):
            raise FidevalError(f"{shown(p)}: 'num_images' is {num!r}, expected an integer")
        num = int(num)
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key, value in data.items():
        if key == "num_images":
            continue
        if not isinstance(value, dict) or "mu" not in value or "sigma" not in value:
            got = sorted(map(str, value)) if isinstance(value, dict) else type(value).__name__
            raise FidevalError(
                f"{shown(p)}: entry {key!r} is {got}; expected a dict with mu and sigma"
            )
        mu = np.asarray(value["mu"])
        sigma = np.asarray(value["sigma"])
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise FidevalError(
                f"{shown(p)}: {key!r} has mu {mu.shape} and sigma {sigma.shape}; expected (d,) "
                "and (d, d)"
            )
        if mu.dtype.kind != "f" or sigma.dtype.kind != "f":
            raise FidevalError(
                f"{shown(p)}: {key!r} has mu {mu.dtype} and sigma {sigma.dtype}; expected floats"
            )
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise FidevalError(f"{shown(p)}: {key!r} has non-finite values in mu or sigma")
        stats[str(key)] = (mu.astype(np.float64), sigma.astype(np.float64))
    if not stats:
        raise FidevalError(f"{shown(p)}: no statistics found (keys {sorted(map(str, data))})")
    return EDM2Reference(path=p, num_images=num, stats=stats)
