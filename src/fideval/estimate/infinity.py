"""FID∞ after Chong & Forsyth (CVPR 2020, "Effectively Unbiased FID and Inception
Score and where to find them").

Their recipe: FD at 15 sample sizes from 5k to 50k, each on a subset drawn without
replacement, then an ordinary least-squares line FD = FD∞ + k·(1/N); FD∞ is the
intercept. With one stream kept as K group statistics (no features), the subsets are
nested unions of groups in a random order: S_k = first k groups, for k from
⌈K·min_fraction⌉ to K, at x_k = 1/n(S_k). Several random orders are averaged (their
intercepts and slopes), which lowers the spread the nested design adds (nested
subsets do not share FD_N's first-order noise the way disjoint halves do).

OLS weights for points (x_j, y_j), j = 1..J: slope = Σ b_j y_j with
b_j = (x_j − x̄)/Σ(x − x̄)², intercept = Σ a_j y_j with a_j = 1/J − x̄·b_j.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .bias import Combo, add_combo

__all__ = ["chong_forsyth_combos", "nested_points"]


def nested_points(k: int, min_fraction: float) -> list[int]:
    """Group counts k_min..K of the nested unions (k_min = ⌈K·min_fraction⌉, ≥ 1)."""
    k_min = max(1, min(k - 2, math.ceil(k * min_fraction)))
    return list(range(k_min, k + 1))


def chong_forsyth_combos(
    sizes: Sequence[int], orders: Sequence[Sequence[int]], min_fraction: float = 0.5
) -> tuple[Combo, Combo]:
    """(FD∞ combo, slope combo): OLS over nested unions, averaged over ``orders``."""
    k = len(sizes)
    counts = nested_points(k, min_fraction)
    intercept: Combo = {}
    slope: Combo = {}
    r = len(orders)
    for order in orders:
        subsets = [frozenset(order[:c]) for c in counts]
        xs = [1.0 / sum(sizes[g] for g in s) for s in subsets]
        x_bar = sum(xs) / len(xs)
        sxx = sum((x - x_bar) ** 2 for x in xs)
        for s, x in zip(subsets, xs, strict=True):
            b = (x - x_bar) / sxx
            add_combo(slope, {s: b / r})
            add_combo(intercept, {s: (1.0 / len(xs) - x_bar * b) / r})
    return intercept, slope
