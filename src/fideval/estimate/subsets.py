"""Fréchet distances of unions of groups, from projected group statistics.

For a reference Σ_r = F Fᵀ (factored once by :class:`~fideval.frechet.FrechetReference`)
each group g is projected once: P_g = Fᵀ M2_g F (r×r), b_g = Fᵀ (μ_g − c), t_g = tr M2_g,
with c the mean of all groups (centring keeps the mean corrections free of cancellation).
The statistics of a union S are then exact Chan merges of these projections:

    n_S = Σ n_g,  μ_S = c + Σ n_g (μ_g − c) / n_S,   b_S = Σ n_g b_g / n_S,
    Fᵀ Σ_S F = (Σ_{g∈S} P_g + Σ_{g∈S} n_g (b_g − b_S)(b_g − b_S)ᵀ) / (n_S − 1),
    tr Σ_S   = (Σ t_g + Σ n_g ‖μ_g − μ_S‖²) / (n_S − 1),

so each union costs one symmetric eigenvalue solve and a few d² additions: Σ_{g∈S} P_g is
accumulated in place, as P_all − Σ_{g∉S} P_g when S holds more than half the groups (the
delete-one-group unions cost one subtraction). With a Cholesky reference only the lower
triangles are formed (``_lower_congruence``, about d³ flops against 4·d³), and
only they are read. Everything is computed on statistics divided by a power of two 4^k
(exact; k covers the reference, the groups' covariances and the spread of their means),
so no product overflows; the clamping rules and diagnostics are those of
:meth:`FrechetReference.compare` (both go through
:meth:`FrechetReference.compare_projected`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ..errors import FidevalError
from ..frechet import FrechetReference, FrechetResult, _exponent, _lower_congruence, _times_pow2
from ..stats import GroupedStats

__all__ = ["UnionFrechet"]


def _common_exponent(
    reference: FrechetReference, m2s: list[torch.Tensor], sizes: list[int], dmu: torch.Tensor
) -> int:
    """k with every union's covariance below 4^k entrywise, and ≥ the reference's.

    |Σ_S|_ij ≤ max_g max|M2_g|/(n_g − 1) + 2·max_g ‖μ_g − c‖²_∞ (Chan merge, n_S ≥ 2).
    """
    cov = max(
        max(float(m.max()), -float(m.min())) / max(n - 1, 1)
        for m, n in zip(m2s, sizes, strict=True)
    )
    spread = 2.0 * float(dmu.abs().max()) ** 2 if dmu.numel() else 0.0
    return max(reference.scale_exponent, (_exponent(cov + spread) + 1) // 2)


class UnionFrechet:
    """FD(union of groups, reference), cached by the set of group indices."""

    def __init__(self, grouped: GroupedStats, reference: FrechetReference) -> None:
        sizes = grouped.sizes()
        if grouped.dim is not None and grouped.dim != reference.dim:
            raise FidevalError(
                f"dimension mismatch: features have d={grouped.dim}, reference has "
                f"d={reference.dim}"
            )
        self.k = grouped.k
        self.sizes = sizes
        self.reference = reference
        dev = reference.mu.device
        self._n = torch.tensor(sizes, dtype=torch.float64, device=dev)
        mus = torch.stack([grouped.group(g).mean_tensor.to(dev) for g in range(self.k)])
        self._center = (self._n[:, None] * mus).sum(0) / self._n.sum()
        m2s = [grouped.group(g).m2_tensor.to(dev) for g in range(self.k)]
        self._exp = _common_exponent(reference, m2s, sizes, mus - self._center)
        self._dmu = _times_pow2(mus - self._center, -self._exp)  # (μ_g − c)/2^k
        f = reference.scaled_factor(self._exp)
        self._b = self._dmu @ f  # rows: Fᵀ(μ_g − c)/2^k
        self._p = [self._project(_times_pow2(m2, -2 * self._exp), f) for m2 in m2s]
        self._t = [math.ldexp(float(torch.diagonal(m2).sum()), -2 * self._exp) for m2 in m2s]
        self._p_all = self._p[0].clone()
        for p in self._p[1:]:
            self._p_all.add_(p)
        self._work = torch.empty_like(self._p_all)
        self._cache: dict[frozenset[int], FrechetResult] = {}
        self.evaluations = 0

    def _project(self, m2: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Fᵀ M2 F: its lower triangle only after Cholesky."""
        if self.reference.method == "cholesky":
            return _lower_congruence(m2, f)
        return f.mT @ m2 @ f

    def n_of(self, subset: Iterable[int]) -> int:
        return int(sum(self.sizes[g] for g in subset))

    def _sum_of_projections(self, members: list[int]) -> torch.Tensor:
        """Σ_{g∈S} P_g in the work buffer (P_all − Σ_{g∉S} P_g for large S)."""
        inside = set(members)
        others = [g for g in range(self.k) if g not in inside]
        work = self._work
        if len(others) < len(members):
            work.copy_(self._p_all)
            for g in others:
                work.sub_(self._p[g])
        else:
            work.copy_(self._p[members[0]])
            for g in members[1:]:
                work.add_(self._p[g])
        return work

    def fd(self, subset: Iterable[int]) -> FrechetResult:
        """FD of the union of the groups in ``subset`` against the reference."""
        key = frozenset(int(g) for g in subset)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        members = sorted(key)
        idx = torch.tensor(members, dtype=torch.long, device=self._n.device)
        n = self._n[idx]
        n_s = float(n.sum())
        if n_s < 2:
            raise FidevalError(f"a union of groups holds {int(n_s)} sample(s); need ≥ 2")
        dmu = self._dmu[idx]
        dmu_s = (n[:, None] * dmu).sum(0) / n_s
        b = self._b[idx]
        b_s = (n[:, None] * b).sum(0) / n_s
        db = (b - b_s) * n.sqrt()[:, None]
        c = self._sum_of_projections(members).addmm_(db.mT, db).div_(n_s - 1)
        spread = float((n * ((dmu - dmu_s) ** 2).sum(1)).sum())
        tr1 = (sum(self._t[g] for g in members) + spread) / (n_s - 1)
        mu_s = self._center + _times_pow2(dmu_s, self._exp)
        result = self.reference.compare_projected(mu_s, c, tr1, n=round(n_s), exponent=self._exp)
        self._cache[key] = result
        self.evaluations += 1
        return result
