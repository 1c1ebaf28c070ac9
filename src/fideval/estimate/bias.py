"""Bias corrections as linear combinations of FDs of group unions.

E[FD_N] ≈ FD∞ + k/N (docs/estimators.md): FD is, to leading order, linear in 1/N. Two
lines through points at different N give the intercept FD∞ and the slope k:

* **Delete-a-group jackknife.** With FD_{−g} the FD of all groups but g
  (N − n_g samples), the slope is the mean over g of
  (FD_{−g} − FD_N) / (1/(N − n_g) − 1/N); FD∞ = FD_N − slope/N. With equal groups
  this is Tukey's K·FD_N − (K−1)·mean FD_{−g}.
* **Two-point Richardson.** Split the K groups into two disjoint halves A, B
  (N/2 samples each); slope = (mean(FD_A, FD_B) − FD_N)/(mean(1/n_A, 1/n_B) − 1/N),
  FD∞ = FD_N − slope/N, i.e. 2·FD_N − mean(FD_A, FD_B) for equal halves. Averaging
  over both halves cancels their first-order noise against FD_N's (the correction
  adds almost no variance); several random splits are averaged.

* **Quadratic (second-order generalised jackknife).** E[FD_N] = FD∞ + k/N + c/N²
  through the three averaged points: FD_N at 1/N, mean FD_{−g} at mean 1/(N − n_g),
  mean FD over the Richardson halves at mean(1/n_A, 1/n_B). Lagrange interpolation
  gives FD∞ (x = 0) and E[FD at N_t] (x = 1/N_t) without the O(1/N²) error of the
  two-point lines, at the cost of larger weights on the (second-order) differences.

Each function returns (intercept, slope) as ``Combo`` dicts mapping a union (a
frozenset of group indices) to its weight: value = Σ w·FD(union).
"""

from __future__ import annotations

from collections.abc import Sequence

Combo = dict[frozenset[int], float]

__all__ = ["Combo", "add_combo", "jackknife_combos", "quadratic_combos", "richardson_combos"]


def add_combo(out: Combo, other: Combo, scale: float = 1.0) -> Combo:
    """out += scale·other (in place); returns out."""
    for key, w in other.items():
        out[key] = out.get(key, 0.0) + scale * w
    return out


def _line(full: frozenset[int], n: int, slope: Combo) -> Combo:
    """intercept = FD_N − slope/N."""
    intercept: Combo = {full: 1.0}
    return add_combo(intercept, slope, -1.0 / n)


def jackknife_combos(sizes: Sequence[int]) -> tuple[Combo, Combo]:
    """Delete-a-group jackknife: (FD∞ combo, slope combo)."""
    k = len(sizes)
    n = sum(sizes)
    full = frozenset(range(k))
    slope: Combo = {}
    for g in range(k):
        dx = 1.0 / (n - sizes[g]) - 1.0 / n
        add_combo(slope, {full - {g}: 1.0 / (k * dx), full: -1.0 / (k * dx)})
    return _line(full, n, slope), slope


def richardson_combos(sizes: Sequence[int], orders: Sequence[Sequence[int]]) -> tuple[Combo, Combo]:
    """Two-point Richardson over the split (first ⌊K/2⌋ | rest) of each order."""
    k = len(sizes)
    n = sum(sizes)
    full = frozenset(range(k))
    slope: Combo = {}
    for order in orders:
        a = frozenset(order[: k // 2])
        b = full - a
        na, nb = sum(sizes[g] for g in a), sum(sizes[g] for g in b)
        dx = 0.5 * (1.0 / na + 1.0 / nb) - 1.0 / n
        r = len(orders)
        add_combo(slope, {a: 0.5 / (r * dx), b: 0.5 / (r * dx), full: -1.0 / (r * dx)})
    return _line(full, n, slope), slope


def quadratic_combos(
    sizes: Sequence[int], orders: Sequence[Sequence[int]], target_n: int
) -> tuple[Combo, Combo, Combo]:
    """Quadratic in 1/N through (FD_N, mean FD_{−g}, mean FD_halves).

    Returns (FD∞ combo, slope-at-0 combo, E[FD at target_n] combo).
    """
    k = len(sizes)
    n = sum(sizes)
    full = frozenset(range(k))
    points: list[tuple[float, Combo]] = [(1.0 / n, {full: 1.0})]
    points.append(
        (
            sum(1.0 / (n - s) for s in sizes) / k,
            {full - {g}: 1.0 / k for g in range(k)},
        )
    )
    halves: Combo = {}
    xs = []
    for order in orders:
        a = frozenset(order[: k // 2])
        b = full - a
        xs.append(0.5 * (1.0 / sum(sizes[g] for g in a) + 1.0 / sum(sizes[g] for g in b)))
        add_combo(halves, {a: 0.5 / len(orders), b: 0.5 / len(orders)})
    points.append((sum(xs) / len(xs), halves))
    x = [p[0] for p in points]

    def lagrange(at: float) -> list[float]:
        out = []
        for i in range(3):
            w = 1.0
            for j in range(3):
                if j != i:
                    w *= (at - x[j]) / (x[i] - x[j])
            out.append(w)
        return out

    def deriv0() -> list[float]:
        # d/dx of the Lagrange basis at x = 0
        out = []
        for i in range(3):
            j, m = (jj for jj in range(3) if jj != i)
            out.append((-x[j] - x[m]) / ((x[i] - x[j]) * (x[i] - x[m])))
        return out

    def combine(weights: list[float]) -> Combo:
        out: Combo = {}
        for w, (_, combo) in zip(weights, points, strict=True):
            add_combo(out, combo, w)
        return out

    return combine(lagrange(0.0)), combine(deriv0()), combine(lagrange(1.0 / target_n))
