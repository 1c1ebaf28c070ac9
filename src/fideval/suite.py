"""One pass, many metrics: :func:`evaluate` (torch-fidelity's ``calculate_metrics``).

Each side is streamed once (:func:`fideval.streaming.collect`) with exactly the
consumers the asked metrics need, and each metric is then computed by the same function
its own subcommand calls, on the same arrays — so each value equals the subcommand's.

``a`` is the generated side and ``b`` the reference (torch-fidelity's ``input1`` and
``input2``): IS is computed on ``a``; PRDC takes ``b`` as real and ``a`` as fake.

Memory: FID keeps O(d²) statistics per side, plus the features for its exact route
while they fit the in-memory cap (2 GiB of float32 per side; past it, the statistics
route). KID, PRDC and CMMD need the samples: a feature *file* is memory-mapped (no cap);
features extracted from images are kept in memory up to the cap, past which it is an
error that says so. IS keeps the 1008 logits of side ``a`` (8 KiB per image, float64).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import streaming
from .errors import FidevalError
from .features.registry import extractor as build_extractor
from .pipeline import compare_sides
from .stats import GaussianStats
from .streaming import FEATURES_IN_MEMORY_BYTES, Lazy, Side, Source

__all__ = ["METRICS", "EvalResult", "compare", "evaluate"]

#: The metrics :func:`evaluate` computes, by name.
METRICS = ("fid", "kid", "prdc", "is", "cmmd")

_NEEDS_SAMPLES = {"kid", "prdc", "cmmd"}


@dataclass
class EvalResult:
    """The values of one :func:`evaluate` call; ``to_dict()`` for JSON."""

    values: dict[str, Any]
    n_a: int
    n_b: int
    provenance_a: dict[str, Any] = field(default_factory=dict)
    provenance_b: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    from_cache: tuple[bool, bool] = (False, False)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.values,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "from_cache": list(self.from_cache),
            "meta_a": self.provenance_a,
            "meta_b": self.provenance_b,
            "warnings": list(self.warnings),
        }


def _lazy(extractor: Any, **options: Any) -> Lazy:
    """The extractor, built on first use (``extractor`` may already be a :class:`Lazy`)."""
    if isinstance(extractor, Lazy):
        return extractor
    return Lazy(lambda: build_extractor(extractor, **options))


def parse_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """``"fid,kid"`` or ``("fid", "kid")`` → checked names, in the given order."""
    names = [
        m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics)
    ]
    names = [m for m in names if m]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise FidevalError(
            f"unknown metric(s) {unknown or names}; expected some of {', '.join(METRICS)}"
        )
    return tuple(dict.fromkeys(names))


def _side(
    src: Source,
    lazy: Lazy,
    *,
    samples: bool,
    logits: bool,
    cache: Any,
    feature_cap: int,
    options: dict[str, Any],
) -> tuple[Side, bool]:
    """One side from one pass (or from the feature cache)."""
    mode = "required" if samples else "if-fits"
    if src.kind != "images" or cache is None:
        return (
            streaming.collect(
                src, lazy, features=mode, logits=logits, feature_cap=feature_cap, **options
            ),
            False,
        )
    ext = lazy.get()
    key = cache.key(src, ext, logits)
    hit = cache.load(key) if key is not None else None
    if hit is not None:
        feats, cached_logits, meta = hit
        return _side_from_arrays(src, feats, cached_logits if logits else None, meta), True
    side = streaming.collect(
        src, lazy, features="required", logits=logits, feature_cap=feature_cap, **options
    )
    if key is not None and side.features is not None:
        cache.save(key, side.features, side.logits, side.meta)
    return side, False


def _side_from_arrays(
    src: Source, feats: np.ndarray, logits: np.ndarray | None, meta: dict[str, Any]
) -> Side:
    from .io.statsfile import StatsRecord

    stats = GaussianStats()
    for lo in range(0, feats.shape[0], 4096):
        stats.update(torch.from_numpy(np.ascontiguousarray(feats[lo : lo + 4096])))
    meta = {k: v for k, v in meta.items() if k != "cache_key"}
    rec = StatsRecord(stats.mean, stats.cov, stats.n, meta, src.name, "images")
    return Side(rec, feats, logits, src)


def evaluate(
    a: Any,
    b: Any | None,
    metrics: str | Sequence[str] = ("fid",),
    *,
    extractor: Any = "inception",
    weights: Any = None,
    device: str | torch.device | None = None,
    dims: int | None = None,
    profile: str | None = None,
    batch_size: int = 50,
    num_workers: int | None = None,
    skip_bad: bool = False,
    progress: bool = False,
    force: bool = False,
    cache: str | None = None,
    feature_cap: int = FEATURES_IN_MEMORY_BYTES,
    kid_options: dict[str, Any] | None = None,
    prdc_options: dict[str, Any] | None = None,
    is_options: dict[str, Any] | None = None,
    cmmd_options: dict[str, Any] | None = None,
) -> EvalResult:
    """Several metrics of ``a`` (generated) against ``b`` (reference) from one extraction.

    ``metrics``: any of ``fid``, ``kid``, ``prdc``, ``is``, ``cmmd`` (a list, or a
    comma-separated string); ``b=None`` when only ``is`` is asked for. Sources and
    extractor options are those of :func:`fideval.fid`. ``cache``: a folder where
    extracted features are kept, keyed by the extractor's provenance and a fingerprint
    of every file, so a second call on the same images extracts nothing.
    ``*_options``: keyword arguments of :func:`~fideval.metrics.kid.kid`,
    :func:`~fideval.metrics.prdc.prdc`,
    :func:`~fideval.metrics.inception_score.inception_score` and
    :func:`~fideval.metrics.cmmd.cmmd`. Values: ``fid`` (squared feature units),
    ``kid``/``kid_std``, ``precision``/``recall``/``density``/``coverage``,
    ``is``/``is_std``, ``cmmd``; see each metric's own documentation.
    """
    from .api import check_planned
    from .featurecache import FeatureCache

    names = parse_metrics(metrics)
    lazy = _lazy(extractor, weights=weights, device=device, dims=dims, profile=profile)
    if b is None and set(names) != {"is"}:
        raise FidevalError(
            f"evaluate: b=None (no reference) serves only the Inception Score; asked for {names}"
        )
    sources = [
        streaming.resolve_source(x, name=str(x) if isinstance(x, str) else default)
        for x, default in ((a, "A"), (b, "B"))
        if x is not None
    ]
    samples = bool(_NEEDS_SAMPLES & set(names))
    if samples:
        for src in sources:
            if src.kind == "stats":
                asked = ", ".join(sorted(_NEEDS_SAMPLES & set(names)))
                raise streaming.needs_samples(src.name, asked)
    if "is" in names and sources[0].kind != "images":
        raise FidevalError(
            f"{sources[0].name}: the Inception Score is computed from images through the FID "
            "Inception; for a logits file use `fideval is` / inception_score(logits)"
        )
    if len(sources) == 2:
        check_planned(sources, lazy, force=force)
    store = FeatureCache(cache) if cache else None
    options = {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "skip_bad": skip_bad,
        "progress": progress,
    }
    sides = []
    hits = []
    for i, src in enumerate(sources):
        side, hit = _side(
            src,
            lazy,
            samples=samples,
            logits=(i == 0 and "is" in names),
            cache=store,
            feature_cap=feature_cap,
            options=options,
        )
        sides.append(side)
        hits.append(hit)
    side_a, side_b = sides if len(sides) == 2 else (sides[0], None)
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for name in names:
        values.update(_compute(name, side_a, side_b, force, warnings, locals()))
    return EvalResult(
        values,
        int(side_a.n or 0),
        int(side_b.n or 0) if side_b is not None else 0,
        dict(side_a.meta),
        dict(side_b.meta) if side_b is not None else {},
        tuple(warnings),
        (hits[0], hits[1] if len(hits) > 1 else False),
    )


def _compute(
    name: str, a: Side, b: Side | None, force: bool, warnings: list[str], scope: dict[str, Any]
) -> dict[str, Any]:
    names = (a.record.path or "A", b.record.path or "B" if b is not None else "B")
    if name == "fid":
        result = compare_sides(a, b, force=force)
        warnings.extend(result.warnings)
        return {"fid": result.value, "fid_method": result.method}
    if name == "kid":
        from .metrics.kid import kid

        res = kid(a.features, b.features, names=names, **(scope["kid_options"] or {}))
        return {"kid": res.value, "kid_std": res.std}
    if name == "prdc":
        from .metrics.prdc import prdc

        res = prdc(
            b.features, a.features, names=(names[1], names[0]), **(scope["prdc_options"] or {})
        )
        return {k: res.to_dict()[k] for k in ("precision", "recall", "density", "coverage")}
    if name == "is":
        from .metrics.inception_score import inception_score

        res = inception_score(a.logits, name=f"{names[0]} logits", **(scope["is_options"] or {}))
        return {"is": res.value, "is_std": res.std}
    from .metrics.cmmd import cmmd

    return {"cmmd": cmmd(a.features, b.features, names=names, **(scope["cmmd_options"] or {}))}


def compare(
    a: Any,
    b: Any,
    reference: Any,
    *,
    extractor: Any = "inception",
    paired: bool = True,
    weights: Any = None,
    device: str | torch.device | None = None,
    dims: int | None = None,
    profile: str | None = None,
    batch_size: int = 50,
    num_workers: int | None = None,
    progress: bool = False,
    force: bool = False,
) -> Any:
    """FID(a) − FID(b) against one reference, with a 95% interval and a p-value.

    ``a`` and ``b`` are sample sources (feature arrays (N, d), image arrays, folders,
    feature files — anything :func:`fideval.fid` accepts except statistics); with
    ``paired=True`` row i of ``a`` and row i of ``b`` came from the same noise, so they
    must have the same N. ``reference`` is any source: its samples put the reference's
    own noise into the interval; statistics make the interval conditional on it (a
    warning says so). Each source is read once through the one path, images through one
    extractor. Returns :class:`~fideval.metrics.compare.Comparison` (``fid_a``,
    ``fid_b``, ``difference``, ``ci95``, ``p_value``, ``n``, ``paired``, ``to_dict()``).
    """
    from .api import check_planned
    from .metrics.compare import compare_features

    lazy = _lazy(extractor, weights=weights, device=device, dims=dims, profile=profile)
    labelled = ((a, "A"), (b, "B"), (reference, "reference"))
    sources = [
        streaming.resolve_source(x, name=str(x) if isinstance(x, str) else label)
        for x, label in labelled
    ]
    for src in sources[:2]:
        if src.kind == "stats":
            raise streaming.needs_samples(src.name, "a comparison")
    check_planned([sources[0], sources[2]], lazy, force=force)
    check_planned([sources[1], sources[2]], lazy, force=force)
    options = {"batch_size": batch_size, "num_workers": num_workers, "progress": progress}
    sides = [
        streaming.collect(
            src, lazy, features="required" if src.kind != "stats" else None, **options
        )
        for src in sources
    ]
    ref = sides[2].features if sides[2].features is not None else sides[2].record
    return compare_features(sides[0].features, sides[1].features, ref, paired=paired)
