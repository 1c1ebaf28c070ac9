"""Kernel Inception Distance (Bińkowski et al., 2018).

KID is the unbiased estimate of the squared maximum mean discrepancy (MMD²)
between two feature sets under the cubic polynomial kernel

    k(x, y) = (γ · xᵀy + c)^p,   γ = 1/d, c = 1, p = 3 by default.

The kernel must be positive semidefinite: p a whole number ≥ 1, γ > 0, c ≥ 0.
Other values (p = 2.5 gives NaN on negative bases, p ≤ 0, γ ≤ 0, c < 0) are
rejected with a :class:`~fideval.errors.FidevalError` naming the parameter.

For samples X (size m) and Y (size n) the unbiased estimator (a U-statistic) is

    MMD²_u = Σ_{i≠j} k(x_i, x_j) / (m(m−1)) + Σ_{i≠j} k(y_i, y_j) / (n(n−1))
             − 2 Σ_{i,j} k(x_i, y_j) / (m n).

As in clean-fid and torch-fidelity, KID is the mean of MMD²_u over S subsets of
size M drawn without replacement from each set (defaults S=100, M=1000), and
``kid_std`` is the population standard deviation (ddof=0) of the S subset
values, as torch-fidelity and torchmetrics report it: the spread of one subset
estimate, not the standard error of the mean. Units: those of k (feature-scale
dependent), not multiplied by any factor.

Kernel sums are accumulated in float64 over row strips, so the full-set value
(S=1, M=N) works at N=50 000 without an N×N matrix.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import FidevalError
from ._distances import RowSource, iter_strips


@dataclass(frozen=True)
class KIDResult:
    """KID value (mean over subsets), std (ddof=0) and per-subset values."""

    value: float
    std: float
    subsets: int
    subset_size_x: int
    subset_size_y: int
    values: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kid": self.value,
            "kid_std": self.std,
            "subsets": self.subsets,
            "subset_size": [self.subset_size_x, self.subset_size_y],
        }


def check_kernel(degree: Any, gamma: Any, coef0: Any) -> tuple[int, float | None, float]:
    """Validate the polynomial kernel (γ·xᵀy + c)^p; return ``(p, γ, c)`` normalised.

    The kernel must be positive semidefinite for MMD² to be a (squared) distance:
    ``degree`` p a whole number ≥ 1 (``3`` or ``3.0``; a fractional power of a
    negative base is NaN), ``gamma`` γ finite and > 0 (``None``: 1/d, chosen later),
    ``coef0`` c finite and ≥ 0. Anything else raises :class:`FidevalError` naming the
    parameter, the value given and what is expected.
    """
    if (
        isinstance(degree, bool)
        or not isinstance(degree, numbers.Real)
        or not math.isfinite(float(degree))
        or float(degree) != int(float(degree))
        or float(degree) < 1
    ):
        raise FidevalError(
            f"KID kernel degree must be a whole number ≥ 1 (the polynomial kernel "
            f"(γ·xᵀy + c)^degree), got {degree!r}"
        )
    p = int(float(degree))
    g: float | None = None
    if gamma is not None:
        if (
            isinstance(gamma, bool)
            or not isinstance(gamma, numbers.Real)
            or not math.isfinite(float(gamma))
            or float(gamma) <= 0
        ):
            raise FidevalError(
                f"KID kernel gamma must be a finite number > 0 (default 1/d), got {gamma!r}"
            )
        g = float(gamma)
    if (
        isinstance(coef0, bool)
        or not isinstance(coef0, numbers.Real)
        or not math.isfinite(float(coef0))
        or float(coef0) < 0
    ):
        raise FidevalError(
            f"KID kernel coef0 must be a finite number ≥ 0 (default 1), got {coef0!r}"
        )
    return p, g, float(coef0)


def _kernel_sums(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    same: bool,
    gamma: float,
    coef0: float,
    degree: int,
    block_bytes: int | None,
) -> tuple[float, float]:
    """Return (Σ_ij k(a_i, b_j), Σ_i k(a_i, b_i) if ``same`` else 0), in float64."""
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    diag = torch.zeros((), dtype=torch.float64, device=a.device)
    for s, e in iter_strips(a.shape[0], b.shape[0], a.element_size(), block_bytes):
        k = torch.addmm(
            torch.full((1, 1), coef0, dtype=a.dtype, device=a.device),
            a[s:e],
            b.T,
            beta=1.0,
            alpha=gamma,
        )
        k.pow_(degree)
        total += k.sum(dtype=torch.float64)
        if same:
            rows = torch.arange(e - s, device=a.device)
            diag += k[rows, rows + s].sum(dtype=torch.float64)
    return float(total), float(diag)


def mmd2_unbiased(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    block_bytes: int | None = None,
) -> float:
    """Unbiased MMD² of two validated tensors under (γ xᵀy + c)^p (see module doc).

    ``degree`` p (whole, ≥ 1), ``gamma`` γ (> 0, default 1/d) and ``coef0`` c (≥ 0)
    are checked by :func:`check_kernel`. Units: those of the kernel values.
    """
    degree, gamma, coef0 = check_kernel(degree, gamma, coef0)
    m, n = x.shape[0], y.shape[0]
    g = 1.0 / x.shape[1] if gamma is None else gamma
    kw = {"gamma": g, "coef0": coef0, "degree": degree, "block_bytes": block_bytes}
    sxx, dxx = _kernel_sums(x, x, same=True, **kw)
    syy, dyy = _kernel_sums(y, y, same=True, **kw)
    sxy, _ = _kernel_sums(x, y, same=False, **kw)
    return (sxx - dxx) / (m * (m - 1)) + (syy - dyy) / (n * (n - 1)) - 2.0 * sxy / (m * n)


def kid(
    x: Any,
    y: Any,
    *,
    subsets: int = 100,
    subset_size: int | None = 1000,
    seed: int = 0,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    dtype: str | torch.dtype = "float64",
    device: str | torch.device | None = None,
    block_bytes: int | None = None,
    names: tuple[str, str] = ("x", "y"),
) -> KIDResult:
    """Kernel Inception Distance between feature sets ``x`` (N, d) and ``y`` (M, d).

    Mean over ``subsets`` of the unbiased MMD² (module doc) on subsets of
    ``subset_size`` rows drawn without replacement from each set with
    ``numpy.random.default_rng(seed)``. ``subset_size=None`` uses each full set
    (then ``subsets`` must be 1): the deterministic full-set MMD²_u. A subset
    size equal to a set's size also uses that set whole, in its given order.

    Kernel (γ·xᵀy + c)^p: ``degree`` p a whole number ≥ 1, ``gamma`` γ > 0
    (``None``: 1/d), ``coef0`` c ≥ 0; other values raise :class:`FidevalError`
    before any data is read (see :func:`check_kernel`).

    Returns a :class:`KIDResult`; ``std`` has ddof=0 (0 when ``subsets == 1``).
    """
    degree, gamma, coef0 = check_kernel(degree, gamma, coef0)
    xs_src = RowSource(x, names[0], min_rows=2, dtype=dtype, device=device)
    ys_src = RowSource(y, names[1], min_rows=2, dtype=dtype, device=device)
    if xs_src.shape[1] != ys_src.shape[1]:
        raise FidevalError(
            f"feature dimensions differ: {names[0]} has d={xs_src.shape[1]}, {names[1]} has "
            f"d={ys_src.shape[1]}; both must come from the same extractor"
        )
    if subsets < 1:
        raise FidevalError(f"subsets must be ≥ 1, got {subsets}")
    if subset_size is None:
        if subsets != 1:
            raise FidevalError("full-set KID (subset_size=None) is deterministic: use subsets=1")
        mx, my = xs_src.shape[0], ys_src.shape[0]
    else:
        if subset_size < 2:
            raise FidevalError(f"subset_size must be ≥ 2 for the unbiased MMD², got {subset_size}")
        for src in (xs_src, ys_src):
            if subset_size > src.shape[0]:
                raise FidevalError(
                    f"subset_size {subset_size} exceeds the {src.shape[0]} rows of {src.name}; "
                    f"use a subset size ≤ {src.shape[0]} (subsets are drawn without replacement)"
                )
        mx = my = subset_size
    rng = np.random.default_rng(seed)
    values = np.empty(subsets, dtype=np.float64)
    kw = {"degree": degree, "gamma": gamma, "coef0": coef0, "block_bytes": block_bytes}
    # A set used whole is converted once; subsets convert only their own rows.
    x_all = xs_src.take() if mx == xs_src.shape[0] else None
    y_all = ys_src.take() if my == ys_src.shape[0] else None
    for i in range(subsets):
        xs = (
            x_all
            if x_all is not None
            else xs_src.take(rng.choice(xs_src.shape[0], mx, replace=False))
        )
        ys = (
            y_all
            if y_all is not None
            else ys_src.take(rng.choice(ys_src.shape[0], my, replace=False))
        )
        if xs.device != ys.device:
            raise FidevalError(f"{names[0]} is on {xs.device} but {names[1]} is on {ys.device}")
        values[i] = mmd2_unbiased(xs, ys, **kw)
    if not np.isfinite(values).all():
        raise FidevalError(
            f"KID of {names[0]} and {names[1]}: the kernel (γ·xᵀy + c)^p overflowed "
            f"(degree={degree}, gamma={gamma}, coef0={coef0}, dtype {dtype}); the features or "
            "the kernel parameters are too large for this precision"
        )
    return KIDResult(
        value=float(values.mean()),
        std=float(values.std(ddof=0)),
        subsets=subsets,
        subset_size_x=mx,
        subset_size_y=my,
        values=values,
    )
