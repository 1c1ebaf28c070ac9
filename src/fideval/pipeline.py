"""The comparison of two sides: the provenance guard, then the Fréchet kernel.

The only place two sides meet. Each side comes from :func:`fideval.streaming.collect`
(or a statistics record); when both have their features at hand the exact features
route is used, otherwise the statistics route with each side's N.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._text import shown
from .errors import FidevalError
from .frechet import FrechetResult, frechet_details, frechet_from_features
from .io.provenance import check_compatible
from .streaming import FEATURES_IN_MEMORY_BYTES, Side

__all__ = ["check_dims", "compare_sides"]


def _made_by(meta: dict[str, Any] | None) -> str:
    ext = (meta or {}).get("extractor")
    return f" (made by extractor {ext!r})" if ext else ""


def check_dims(
    name_a: str,
    dim_a: int,
    meta_a: dict[str, Any] | None,
    name_b: str,
    dim_b: int,
    meta_b: dict[str, Any] | None,
) -> None:
    """The one dimension check: a mismatch names the extractor that made each side."""
    if dim_a != dim_b:
        hint = ""
        for meta in (meta_a, meta_b):
            ext = (meta or {}).get("extractor")
            if ext:
                from .features.registry import canonical_name

                name = canonical_name(str(ext))
                if name:
                    hint = f"; use the same extractor for both sides (e.g. extractor {name!r})"
                    break
        raise FidevalError(
            f"dimension mismatch: {name_a} has d={dim_a}{_made_by(meta_a)}, {name_b} has "
            f"d={dim_b}{_made_by(meta_b)}{hint}"
        )


def _in_memory(features: np.ndarray | None) -> bool:
    """Within the in-memory cap as float32 (a memory-mapped file is read whole)."""
    return features is not None and features.shape[0] * features.shape[1] * 4 <= (
        FEATURES_IN_MEMORY_BYTES
    )


def compare_sides(a: Side, b: Side, *, force: bool = False) -> FrechetResult:
    """FD between two sides, after the provenance guard.

    When both sides have their features at hand (within the in-memory cap), the exact
    features route is used at any N; otherwise the statistics route, with each side's N.
    """
    name_a = shown(a.record.path or "A")
    name_b = shown(b.record.path or "B")
    check_dims(name_a, a.record.dim, a.meta, name_b, b.record.dim, b.meta)
    warnings = check_compatible(a.meta, b.meta, name_a=name_a, name_b=name_b, force=force)
    if _in_memory(a.features) and _in_memory(b.features):
        result = frechet_from_features(np.asarray(a.features), np.asarray(b.features))
    else:
        try:
            result = frechet_details(
                a.record.mu,
                a.record.sigma,
                b.record.mu,
                b.record.sigma,
                n1=a.record.n,
                n2=b.record.n,
            )
        except FidevalError as exc:
            raise type(exc)(f"{name_a} vs {name_b}: {exc}") from exc
    if warnings:
        result = FrechetResult(**{**result.__dict__, "warnings": result.warnings + tuple(warnings)})
    return result
