"""Fréchet distances of unions of groups, from projected group statistics.

For a reference Σ_r = F Fᵀ (factored once by :class:`~fideval.frechet.FrechetReference`)
each group g is projected once: P_g = Fᵀ M2_g F (r×r), b_g = Fᵀ μ_g, t_g = tr M2_g.
The statistics of a union S are then exact Chan merges of these projections:

    n_S = Σ n_g,  μ_S = Σ n_g μ_g / n_S,
    Fᵀ Σ_S F = (Σ P_g + Σ n_g (b_g − b_S)(b_g − b_S)ᵀ) / (n_S − 1),
    tr Σ_S   = (Σ t_g + Σ n_g ‖μ_g − μ_S‖²) / (n_S − 1),

so each union costs one symmetric eigenvalue solve (no d×d product), with the same
clamping rules and diagnostics as :meth:`FrechetReference.compare` (both go through
:meth:`FrechetReference.compare_projected`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..errors import FidevalError
from ..frechet import FrechetReference, FrechetResult
from ..stats import GroupedStats

__all__ = ["UnionFrechet"]


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
        f = reference.factor
        dev = f.device
        self._n = torch.tensor(sizes, dtype=torch.float64, device=dev)
        mus, bs, ps, ts = [], [], [], []
        for g in range(self.k):
            st = grouped.group(g)
            mu = st.mean_tensor.to(dev)
            m2 = st.m2_tensor.to(dev)
            mus.append(mu)
            bs.append(f.mT @ mu)
            ps.append(f.mT @ m2 @ f)
            ts.append(torch.diagonal(m2).sum())
        self._mu = torch.stack(mus)
        self._b = torch.stack(bs)
        self._p = torch.stack(ps)
        self._t = torch.stack(ts)
        self._cache: dict[frozenset[int], FrechetResult] = {}
        self.evaluations = 0

    def n_of(self, subset: Iterable[int]) -> int:
        return int(sum(self.sizes[g] for g in subset))

    def fd(self, subset: Iterable[int]) -> FrechetResult:
        """FD of the union of the groups in ``subset`` against the reference."""
        key = frozenset(int(g) for g in subset)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        idx = torch.tensor(sorted(key), dtype=torch.long, device=self._mu.device)
        n = self._n[idx]
        n_s = float(n.sum())
        if n_s < 2:
            raise FidevalError(f"a union of groups holds {int(n_s)} sample(s); need ≥ 2")
        mu_s = (n[:, None] * self._mu[idx]).sum(0) / n_s
        b_s = (n[:, None] * self._b[idx]).sum(0) / n_s
        db = self._b[idx] - b_s
        dmu = self._mu[idx] - mu_s
        c = (self._p[idx].sum(0) + (n[:, None] * db).mT @ db) / (n_s - 1)
        tr1 = float((self._t[idx].sum() + (n * (dmu * dmu).sum(1)).sum()) / (n_s - 1))
        result = self.reference.compare_projected(mu_s, c, tr1, n=round(n_s))
        self._cache[key] = result
        self.evaluations += 1
        return result
