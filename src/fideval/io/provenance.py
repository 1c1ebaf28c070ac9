"""Provenance: what made a set of statistics, and the guard on every comparison.

A provenance record is a flat JSON-able dict. The keys that change the numbers —
:data:`COMPARED_KEYS` — must agree (where both sides record them) before two
statistics are compared; the rest (source, N, seed, version, time) is information.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from .._version import __version__
from ..errors import IncompatibleStatsError

#: Keys that must agree between two statistics before they are compared.
COMPARED_KEYS: tuple[str, ...] = ("extractor", "weights_sha256", "dims", "profile", "image_size")


def make_provenance(**fields: Any) -> dict[str, Any]:
    """A provenance record with fideval's version and the creation time added."""
    meta = {k: v for k, v in fields.items() if v is not None}
    meta.setdefault("fideval_version", __version__)
    meta.setdefault("created_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return meta


def check_compatible(
    meta_a: dict[str, Any] | None,
    meta_b: dict[str, Any] | None,
    *,
    name_a: str = "A",
    name_b: str = "B",
    force: bool = False,
) -> list[str]:
    """Raise :class:`IncompatibleStatsError` when the pipelines behind A and B differ.

    Returns warnings: keys known on one side only, or mismatches allowed by ``force``.
    """
    meta_a = meta_a or {}
    meta_b = meta_b or {}
    warnings: list[str] = []
    mismatches: list[str] = []
    for key in COMPARED_KEYS:
        in_a, in_b = key in meta_a, key in meta_b
        if in_a and in_b:
            if meta_a[key] != meta_b[key]:
                mismatches.append(
                    f"{key}: {meta_a[key]!r} ({name_a}) vs {meta_b[key]!r} ({name_b})"
                )
        elif in_a != in_b:
            known, unknown = (name_a, name_b) if in_a else (name_b, name_a)
            warnings.append(
                f"{key} is recorded for {known} but not for {unknown}; cannot check they agree"
            )
    if mismatches:
        text = "; ".join(mismatches)
        if not force:
            raise IncompatibleStatsError(
                f"statistics were made by different pipelines ({text}); their Fréchet "
                "distance is not meaningful. Recompute one side, or pass force=True "
                "(--force) to compare anyway"
            )
        warnings.append(f"compared despite different pipelines (forced): {text}")
    return warnings
