"""Input validation and chunked pairwise computations shared by the metrics.

Every metric here works on feature arrays of shape ``(N, d)``, given as numpy
arrays (memory-mapped ones included) or torch tensors on any device. Inputs are
validated once (2-D, same ``d``, enough rows, finite) and converted to a torch
tensor of the compute dtype (float64 unless the caller asks for float32).

Pairwise quantities (squared distances, kernels) are never materialised as an
``N × M`` matrix: they are computed on row strips ``X[i:i+b] × Y`` whose size is
bounded by a byte budget (:data:`DEFAULT_BLOCK_BYTES`), and reduced (summed,
counted, top-k) strip by strip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ..errors import FidevalError, NonFiniteFeaturesError

#: Upper bound, in bytes, of one strip of pairwise values (one ``b × M`` block).
#: Peak extra memory of a chunked metric is a small multiple of this (the strip,
#: one elementwise temporary and a boolean mask), independent of ``N``.
DEFAULT_BLOCK_BYTES = 64 * 2**20

#: Called with ``(rows, cols)`` of every strip before it is computed. Tests use it
#: to check that no strip grows with ``N × M``; ``None`` in normal use.
_block_hook: Callable[[int, int], None] | None = None

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Map ``"float64"``/``"float32"`` (or the torch dtype itself) to a torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float64, torch.float32):
            raise FidevalError(f"compute dtype must be float64 or float32, got {dtype}")
        return dtype
    try:
        return _DTYPES[str(dtype)]
    except KeyError:
        raise FidevalError(f"compute dtype must be 'float64' or 'float32', got {dtype!r}") from None


def _describe_rows(rows: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return shown + (", …" if rows.size > limit else "")


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise :class:`NonFiniteFeaturesError` naming the count and first rows of NaN/Inf."""
    finite = torch.isfinite(t)
    if bool(finite.all()):
        return
    bad = ~finite
    count = int(bad.sum())
    n_nan = int(torch.isnan(t).sum())
    rows = torch.nonzero(bad.reshape(t.shape[0], -1).any(dim=1)).flatten().cpu().numpy()
    raise NonFiniteFeaturesError(
        f"{name}: {count} non-finite values ({n_nan} NaN, {count - n_nan} Inf) in "
        f"{rows.size} of {t.shape[0]} rows (first rows: {_describe_rows(rows)}); "
        "expected finite features"
    )


def as_features(
    x: Any,
    name: str,
    *,
    ndim: int = 2,
    min_rows: int = 1,
    dtype: str | torch.dtype = torch.float64,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Validate ``x`` and return it as a torch tensor of ``dtype``.

    ``x``: numpy array (memory-mapped allowed) or torch tensor, shape ``(N, d)``
    (or ``ndim`` dimensions). ``device``: where to compute; default: the tensor's
    own device, CPU for numpy input. Raises :class:`FidevalError` naming ``name``
    on a wrong shape, too few rows, a non-numeric dtype or NaN/Inf values.
    """
    tdtype = resolve_dtype(dtype)
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if device is not None:
            t = t.to(device)
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise FidevalError(f"{name}: cannot be read as an array ({exc})") from exc
        if arr.dtype.kind not in "biuf":
            raise FidevalError(f"{name}: dtype {arr.dtype} is not numeric; expected float features")
        native = np.float32 if arr.dtype == np.float32 else np.float64
        t = torch.from_numpy(np.array(arr, dtype=native, order="C"))
        if device is not None:
            t = t.to(device)
    if t.is_complex() or t.dtype == torch.bool:
        raise FidevalError(f"{name}: dtype {t.dtype} is not a real float; expected float features")
    if t.ndim != ndim:
        expected = "(N, d)" if ndim == 2 else f"{ndim} dimensions"
        raise FidevalError(
            f"{name}: shape {tuple(t.shape)} has {t.ndim} dimensions; expected {expected}"
        )
    if t.shape[0] < min_rows:
        raise FidevalError(f"{name}: {t.shape[0]} rows; at least {min_rows} needed")
    if ndim >= 2 and t.shape[-1] == 0:
        raise FidevalError(f"{name}: feature dimension is 0; expected d ≥ 1")
    t = t.to(tdtype)
    check_finite(t, name)
    return t


class RowSource:
    """A validated (N, d) array or tensor whose rows are converted only when taken.

    Lets subset-based metrics (KID) draw rows from a memory-mapped 50 000 × 2048
    file without holding a float64 copy of all of it. Finiteness is checked in
    row chunks at construction, so errors still name the array and the rows.
    """

    def __init__(
        self,
        x: Any,
        name: str,
        *,
        min_rows: int = 1,
        dtype: str | torch.dtype = torch.float64,
        device: str | torch.device | None = None,
        chunk_rows: int = 8192,
    ) -> None:
        self.name = name
        self.dtype = resolve_dtype(dtype)
        if isinstance(x, torch.Tensor):
            self.data: Any = x.detach() if device is None else x.detach().to(device)
            self.device = self.data.device
        else:
            self.data = np.asarray(x)
            if self.data.dtype.kind not in "biuf":
                raise FidevalError(
                    f"{name}: dtype {self.data.dtype} is not numeric; expected float features"
                )
            self.device = torch.device("cpu" if device is None else device)
        shape = tuple(self.data.shape)
        if len(shape) != 2:
            raise FidevalError(
                f"{name}: shape {shape} has {len(shape)} dimensions; expected (N, d)"
            )
        if shape[0] < min_rows:
            raise FidevalError(f"{name}: {shape[0]} rows; at least {min_rows} needed")
        if shape[1] == 0:
            raise FidevalError(f"{name}: feature dimension is 0; expected d ≥ 1")
        self.shape = shape
        self._check_finite(chunk_rows)

    def _check_finite(self, chunk_rows: int) -> None:
        bad_rows: list[np.ndarray] = []
        n_bad = n_nan = 0
        for s in range(0, self.shape[0], chunk_rows):
            part = self.data[s : s + chunk_rows]
            if isinstance(part, torch.Tensor):
                part = part.cpu().numpy() if not bool(torch.isfinite(part).all()) else None
            if part is None:
                continue
            part = np.asarray(part)
            fin = np.isfinite(part)
            if fin.all():
                continue
            n_bad += int((~fin).sum())
            n_nan += int(np.isnan(part).sum())
            bad_rows.append(s + np.nonzero(~fin.all(axis=1))[0])
        if n_bad:
            rows = np.concatenate(bad_rows)
            raise NonFiniteFeaturesError(
                f"{self.name}: {n_bad} non-finite values ({n_nan} NaN, {n_bad - n_nan} Inf) in "
                f"{rows.size} of {self.shape[0]} rows (first rows: {_describe_rows(rows)}); "
                "expected finite features"
            )

    def take(self, idx: np.ndarray | None = None) -> torch.Tensor:
        """Rows ``idx`` (all rows when ``None``) as a tensor of the compute dtype."""
        if isinstance(self.data, torch.Tensor):
            t = self.data if idx is None else self.data[torch.from_numpy(idx).to(self.device)]
        else:
            rows = self.data if idx is None else self.data[np.sort(idx)]
            native = np.float32 if rows.dtype == np.float32 else np.float64
            t = torch.from_numpy(np.array(rows, dtype=native, order="C")).to(self.device)
        return t.to(self.dtype)


def check_same_dim(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise :class:`FidevalError` when the feature dimensions (last axis) differ."""
    if a.shape[-1] != b.shape[-1]:
        raise FidevalError(
            f"feature dimensions differ: {name_a} has d={a.shape[-1]}, {name_b} has "
            f"d={b.shape[-1]}; both must come from the same extractor"
        )
    if a.device != b.device:
        raise FidevalError(f"{name_a} is on {a.device} but {name_b} is on {b.device}")


def strip_rows(n_cols: int, itemsize: int = 8, block_bytes: int | None = None) -> int:
    """Rows per strip so that one ``rows × n_cols`` block fits in ``block_bytes``."""
    budget = DEFAULT_BLOCK_BYTES if block_bytes is None else int(block_bytes)
    return max(1, budget // max(1, n_cols * itemsize))


def iter_strips(
    n_rows: int, n_cols: int, itemsize: int = 8, block_bytes: int | None = None
) -> Iterator[tuple[int, int]]:
    """Yield ``(start, stop)`` row ranges of strips bounded by ``block_bytes``."""
    b = strip_rows(n_cols, itemsize, block_bytes)
    for start in range(0, n_rows, b):
        stop = min(n_rows, start + b)
        if _block_hook is not None:
            _block_hook(stop - start, n_cols)
        yield start, stop


def sq_norms(x: torch.Tensor) -> torch.Tensor:
    """Row-wise squared Euclidean norms ``‖x_i‖²``."""
    return (x * x).sum(dim=1)


def sq_dists(
    a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor, b_sq: torch.Tensor
) -> torch.Tensor:
    """Squared distances ``‖a_i − b_j‖² = ‖a_i‖² + ‖b_j‖² − 2 a_iᵀb_j``, clamped at 0.

    The expanded form can go slightly negative by round-off; it is clamped to 0
    so that a later square root never yields NaN.
    """
    d = torch.addmm(a_sq[:, None] + b_sq[None, :], a, b.T, beta=1.0, alpha=-2.0)
    return d.clamp_min_(0.0)


def knn_sq_radii(
    x: torch.Tensor, k: int, *, block_bytes: int | None = None, x_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared distance from each row of ``x`` to its k-th nearest *other* row.

    The point itself is excluded by index (a duplicate of it still counts as a
    neighbour at distance 0), so ``k=1`` is the distance to the nearest other
    point. Computed on strips ``x[i:i+b] × x``: memory O(b·N), never N × N.
    """
    n = x.shape[0]
    if k < 1 or k > n - 1:
        raise FidevalError(f"k={k} nearest neighbours need at least k+1={k + 1} rows; got {n}")
    if x_sq is None:
        x_sq = sq_norms(x)
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    for s, e in iter_strips(n, n, x.element_size(), block_bytes):
        d = sq_dists(x[s:e], x, x_sq[s:e], x_sq)
        rows = torch.arange(e - s, device=x.device)
        d[rows, rows + s] = float("inf")
        out[s:e] = torch.topk(d, k, dim=1, largest=False, sorted=True).values[:, k - 1]
    return out
