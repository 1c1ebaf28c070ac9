"""The bottom of the flow: one float64 conversion with its dtype policy, and one
finiteness check with one message format.

Every NaN/Inf error names the array (file, key, or ``features batch b``), counts the bad
values and lists the first bad rows — in the batch and in the whole stream when the
array is one batch of a stream. Arrays of any byte order are accepted (converted to
native order); zero-width arrays (d = 0: features (N, 0), a mean of shape (0,)) are
refused with a message naming the array.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import FidevalError, NonFiniteFeaturesError

__all__ = [
    "ArrayLike",
    "as_float64",
    "check_finite",
    "check_finite_rows",
    "check_width",
    "compute_device",
    "native_order",
]

ArrayLike = np.ndarray | torch.Tensor
_EPS64 = float(np.finfo(np.float64).eps)


def compute_device(device: torch.device) -> torch.device:
    """float64 is unavailable on MPS: statistics are computed on the CPU there."""
    return torch.device("cpu") if device.type == "mps" else device


def native_order(arr: np.ndarray) -> np.ndarray:
    """``arr`` in the machine's byte order (``torch.from_numpy`` refuses ``>f8``).

    Already-native arrays are returned as they are (no copy).
    """
    if arr.dtype.isnative:
        return arr
    return arr.astype(arr.dtype.newbyteorder("="))


def check_width(shape: tuple[int, ...], name: str) -> None:
    """Refuse a zero-width array: last axis of length 0 (no feature dimensions)."""
    if len(shape) >= 1 and shape[-1] == 0:
        raise FidevalError(
            f"{name}: zero width (shape {tuple(shape)}): no feature dimensions; expected d ≥ 1"
        )


def as_float64(x: ArrayLike, name: str) -> tuple[torch.Tensor, float]:
    """Return ``x`` as a float64 tensor on a float64-capable device, and the input's eps.

    The eps of the input dtype sets the round-off tolerances: a covariance stored in
    float32 carries float32 round-off even after conversion. Any byte order is
    accepted; a zero-width ``x`` (shape (..., 0)) is refused.
    """
    if isinstance(x, torch.Tensor):
        check_width(tuple(x.shape), name)
        if not (x.dtype.is_floating_point or x.dtype in _INT_DTYPES):
            raise FidevalError(f"{name}: expected a real-valued tensor, got dtype {x.dtype}")
        eps = float(torch.finfo(x.dtype).eps) if x.dtype.is_floating_point else _EPS64
        eps = max(eps, _EPS64)
        dev = compute_device(x.device)
        return x.detach().to(device=dev, dtype=torch.float64), eps
    arr = np.asarray(x)
    check_width(arr.shape, name)
    if arr.dtype.kind not in "fiub":
        raise FidevalError(f"{name}: expected a real-valued array, got dtype {arr.dtype}")
    eps = max(float(np.finfo(arr.dtype).eps), _EPS64) if arr.dtype.kind == "f" else _EPS64
    arr = np.ascontiguousarray(arr, dtype=np.float64)  # also any byte order → native
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy()), eps


_INT_DTYPES = {torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool}


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise :class:`NonFiniteFeaturesError` if ``t`` holds NaN/Inf (one pass when clean).

    A zero-width ``t`` is refused too: it would pass every check vacuously.
    """
    check_width(tuple(t.shape), name)
    if bool(torch.isfinite(t.sum())):  # one reduction; the count only on the error path
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise NonFiniteFeaturesError(
            f"{name} contains {int(bad.sum())} NaN/Inf value(s); expected finite values"
        )


def check_finite_rows(
    x: torch.Tensor,
    name: str,
    *,
    row_offset: int | None = None,
    hint: str = "",
) -> None:
    """Raise naming the rows of a 2-D ``x`` that hold NaN/Inf.

    With ``row_offset`` (``x`` is a batch of a stream starting at that row) the message
    gives the rows both in the batch and in the stream. A zero-width ``x`` is refused.
    """
    check_width(tuple(x.shape), name)
    bad = ~torch.isfinite(x)
    if not bool(bad.any()):
        return
    rows = torch.nonzero(bad.reshape(bad.shape[0], -1).any(dim=1)).flatten().cpu()
    shown = ", ".join(str(int(r)) for r in rows[:10])
    more = "" if rows.numel() <= 10 else f", … ({rows.numel()} rows in all)"
    where = f"rows {shown}{more}"
    if row_offset is not None:
        stream = ", ".join(str(int(r) + row_offset) for r in rows[:10])
        where += f" of the batch; stream rows {stream}"
    raise NonFiniteFeaturesError(
        f"{name}: {int(bad.sum())} NaN/Inf value(s) in {rows.numel()} row(s) ({where}); "
        f"expected finite features{hint}"
    )
