"""Input validation and chunked pairwise computations shared by the metrics.

Every metric here works on feature arrays of shape ``(N, d)``, given as numpy
arrays (memory-mapped ones included) or torch tensors on any device. Inputs are
validated once (2-D, same ``d``, enough rows, finite) and converted to a torch
tensor of the compute dtype (float64 unless the caller asks for float32).

Pairwise quantities (squared distances, kernels) are never materialised as an
``N × M`` matrix: they are computed on row strips ``X[i:i+b] × Y`` whose size is
bounded by a byte budget (:data:`DEFAULT_BLOCK_BYTES`), and reduced (summed,
counted, top-k) strip by strip.

Exact ties. The value the expanded form ‖a‖² + ‖b‖² − 2aᵀb gives for one pair
depends on the matrix product it came from (strip, shape, BLAS kernel), so two
copies of the same pair computed in different products can differ by an ulp.
Metrics that compare distances (k-NN radii, PRDC) therefore merge identical rows
first (:func:`unique_rows`) and take every distance they compare from one
product: a pair is computed once and that one value serves every comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .._arrays import check_finite_rows
from ..errors import FidevalError

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
    check_finite_rows(t.reshape(t.shape[0], -1) if t.ndim > 2 else t, name)
    if tdtype == torch.float32 and t.dtype == torch.float64 and t.numel():
        peak = float(t.abs().max())
        if peak > torch.finfo(torch.float32).max:
            raise FidevalError(
                f"{name}: values up to {peak:.3g} exceed the float32 range; compute in "
                "float64 (drop --float32 / dtype='float32')"
            )
    return t.to(tdtype)


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
        """The one finiteness check, chunk by chunk (a memory map is never read whole)."""
        for s in range(0, self.shape[0], chunk_rows):
            part = self.data[s : s + chunk_rows]
            t = part if isinstance(part, torch.Tensor) else torch.from_numpy(np.array(part))
            check_finite_rows(t, self.name, row_offset=s or None)

    def take(self, idx: np.ndarray | None = None) -> torch.Tensor:
        """Rows ``idx`` (all rows when ``None``) as a tensor of the compute dtype."""
        if isinstance(self.data, torch.Tensor):
            t = self.data if idx is None else self.data[torch.from_numpy(idx).to(self.device)]
        else:
            rows = self.data if idx is None else self.data[np.sort(idx)]
            native = np.float32 if rows.dtype == np.float32 else np.float64
            t = torch.from_numpy(np.array(rows, dtype=native, order="C")).to(self.device)
        return t.to(self.dtype)


def unit_scale(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The tensors divided by one common power of two when their magnitude is so large
    (> 2⁴⁰⁰) that squared distances or norms would overflow; exact (a power of two), so
    every scale-invariant decision (k-NN radii, ≤ tests, row normalisation) is unchanged.
    """
    peak = max((float(t.abs().max()) for t in tensors if t.numel()), default=0.0)
    if not peak > 2.0**400:
        return list(tensors)
    step = 2.0 ** -(int(np.ceil(np.log2(peak))))
    return [t * step for t in tensors]


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


def unique_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of ``x`` (U, d) and ``inverse`` (N,) with ``x[i] == rows[inverse[i]]``.

    Identical rows are exact ties at distance 0; merging them (with counts from
    ``inverse``) makes a repeated point one column, whose distances are computed
    once. Rows are compared by value (−0.0 equals 0.0, at distance 0 anyway).
    Candidates are found by a hash (a fixed random projection): rows with a hash
    of their own are distinct, the others are compared exactly by ``torch.unique``.
    When all rows differ, ``x`` itself is returned (no copy). Order: rows with a
    unique hash in input order, then the merged ones.
    """
    n = x.shape[0]
    identity = torch.arange(n, device=x.device)
    if n < 2:
        return x, identity
    g = torch.Generator(device="cpu").manual_seed(0x5EED)
    v = torch.randn(x.shape[1], generator=g, dtype=torch.float64).to(x.device)
    h = torch.empty(n, dtype=torch.float64, device=x.device)
    step = strip_rows(x.shape[1], 8)  # row chunks of the input, not pairwise strips
    for s in range(0, n, step):
        h[s : s + step] = x[s : s + step].to(torch.float64) @ v
    _, h_inverse, h_counts = torch.unique(h, return_inverse=True, return_counts=True)
    shared = h_counts[h_inverse] > 1
    if not bool(shared.any()):
        return x, identity
    shared_idx = torch.nonzero(shared).flatten()
    merged, m_inverse = torch.unique(x[shared_idx], dim=0, return_inverse=True)
    if merged.shape[0] == shared_idx.shape[0]:
        return x, identity  # only hash collisions of distinct rows
    single_idx = torch.nonzero(~shared).flatten()
    rows = torch.cat([x[single_idx], merged])
    inverse = torch.empty(n, dtype=torch.int64, device=x.device)
    inverse[single_idx] = torch.arange(single_idx.shape[0], device=x.device)
    inverse[shared_idx] = single_idx.shape[0] + m_inverse
    return rows, inverse


def kth_weighted(
    d: torch.Tensor,
    weights: torch.Tensor,
    ks: Sequence[int],
    self_cols: torch.Tensor | None = None,
) -> dict[int, torch.Tensor]:
    """Per row of a strip ``d`` (b, M): its k-th smallest value, column j counted w_j times.

    ``weights`` (M,) int64 ≥ 1: how many points column j stands for.
    ``self_cols`` (b,): the column of each row's own point; it counts w − 1 times
    (the point's other copies) and ``d`` must hold 0 there. Returns, for each k in
    ``ks``, the smallest entry t of the row with Σ_{j: d_j ≤ t} w_j ≥ k (k-th
    nearest neighbour, the point itself excluded): an entry of ``d`` itself, so it
    can be compared exactly with the other entries of the same strip. ``d`` is not
    modified. Each row must have at least max(ks) neighbours in all.
    """
    m = d.shape[1]
    kmax = max(ks)
    # The row's own column (value 0) may take one of the top places: look one further.
    top = min(kmax + (self_cols is not None), m)
    vals, idx = torch.topk(d, top, dim=1, largest=False, sorted=True)
    wts = weights[idx]
    if self_cols is not None:
        wts = wts - (idx == self_cols[:, None]).to(wts.dtype)
    cum = wts.cumsum(dim=1)
    out = {}
    for k in ks:
        pos = (cum < k).sum(dim=1)
        if bool((pos >= top).any()):
            raise FidevalError(f"k={k} nearest neighbours: a row has fewer than {k} neighbours")
        out[k] = vals.gather(1, pos[:, None]).squeeze(1)
    return out


def knn_sq_radii(
    x: torch.Tensor,
    k: int | Sequence[int],
    *,
    block_bytes: int | None = None,
    x_sq: torch.Tensor | None = None,
) -> Any:
    """Squared distance from each row of ``x`` to its k-th nearest *other* row.

    The point itself is excluded by index (a duplicate of it still counts as a
    neighbour at distance 0), so ``k=1`` is the distance to the nearest other
    point. Identical rows are merged first (:func:`unique_rows`), so a duplicate
    is at distance exactly 0. Computed on strips ``u[i:i+b] × u`` of the distinct
    rows u: memory O(b·N), never N × N. Units: squared feature units. ``k`` an int
    gives a tensor (N,); a sequence of k gives ``{k: tensor}`` from one pass.
    """
    ks = (int(k),) if isinstance(k, int) else tuple(int(kk) for kk in k)
    n = x.shape[0]
    if min(ks) < 1 or max(ks) > n - 1:
        bad = min(ks) if min(ks) < 1 else max(ks)
        raise FidevalError(
            f"k={bad} nearest neighbours need k ≥ 1 and at least k+1={bad + 1} rows; got {n}"
        )
    u, inverse = unique_rows(x)
    u_sq = x_sq if (u is x and x_sq is not None) else sq_norms(u)
    weights = torch.bincount(inverse, minlength=u.shape[0])
    nu = u.shape[0]
    out = {kk: torch.empty(nu, dtype=x.dtype, device=x.device) for kk in ks}
    for s, e in iter_strips(nu, nu, x.element_size(), block_bytes):
        d = sq_dists(u[s:e], u, u_sq[s:e], u_sq)
        self_cols = torch.arange(s, e, device=x.device)
        d[self_cols - s, self_cols] = 0.0  # a point's copies are at distance 0
        for kk, radius in kth_weighted(d, weights, ks, self_cols).items():
            out[kk][s:e] = radius
    result = {kk: r[inverse] for kk, r in out.items()}
    return result[ks[0]] if isinstance(k, int) else result
