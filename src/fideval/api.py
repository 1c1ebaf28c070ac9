"""The entry points users look for: :func:`fid` and the metric object :class:`FID`.

:func:`fid` is pytorch-fid's ``calculate_fid_given_paths`` / clean-fid's ``compute_fid``
for anything :func:`fideval.streaming.resolve_source` understands. :class:`FID` is a
torchmetrics-style metric (``update`` / ``compute`` / ``reset`` / ``merge`` /
``state_dict``) for training loops, with one all-reduce under torch.distributed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import distributed as dist_
from . import streaming
from .errors import FidevalError
from .features.registry import extractor as build_extractor
from .frechet import FrechetReference, FrechetResult
from .io.provenance import check_compatible
from .io.statsfile import StatsRecord
from .pipeline import check_dims, compare_sides
from .stats import GaussianStats, GroupedStats
from .streaming import FEATURES_IN_MEMORY_BYTES, FeatureBank, Lazy, Side, Source

__all__ = ["FID", "check_planned", "fid", "fid_sides"]


def check_planned(sources: list[Source], extractor: Lazy, *, force: bool = False) -> None:
    """Dimensions and provenance of two sides as they will be, before any extraction.

    A statistics record's d and provenance are known, a feature array's d too; an image
    side will have the extractor's. Raises what the comparison itself would raise
    (:func:`fideval.pipeline.compare_sides`), before the hours of an extraction.
    """
    dims: list[int] = []
    metas: list[dict[str, Any] | None] = []
    for src in sources:
        if src.kind == "images":
            ext = extractor.get()
            if getattr(ext, "dims", None) is None:
                return  # a wrapped module: its d is known once it has run
            dims.append(int(ext.dims))
            metas.append(dict(ext.provenance()))
        else:
            dims.append(int(src.dim))  # type: ignore[arg-type]
            metas.append(src.value.meta if src.kind == "stats" else None)
    check_dims(sources[0].name, dims[0], metas[0], sources[1].name, dims[1], metas[1])
    kinds = {s.kind for s in sources}
    if "stats" in kinds and "images" in kinds:
        check_compatible(
            metas[0], metas[1], name_a=sources[0].name, name_b=sources[1].name, force=force
        )


def fid(
    a: Any,
    b: Any,
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
) -> FrechetResult:
    """FID between two sources: folders, image array files, feature files, statistics
    files (every layout, EDM2 pickles with ``#key``), arrays / tensors (2-D features or
    images), statistics, datasets, or iterables of image batches.

    Images of both sides go through one extractor, built once by
    :func:`fideval.extractor` from ``extractor`` (a registry name or a module) and the
    options given (``weights``, ``device``, ``dims``, ``profile``: ``None`` is the
    extractor's default). Everything that can fail without extracting — dimensions, and
    the provenance of a statistics side against the extractor — is checked first. When
    both sides have their features at hand the exact features route is used, else the
    statistics route with each side's N. Returns a :class:`~fideval.frechet.FrechetResult`
    (``float(r)`` is the value, ``r.warnings`` says what to know about it).
    """
    result, _ = fid_sides(
        a,
        b,
        extractor=extractor,
        weights=weights,
        device=device,
        dims=dims,
        profile=profile,
        batch_size=batch_size,
        num_workers=num_workers,
        skip_bad=skip_bad,
        progress=progress,
        force=force,
    )
    return result


def fid_sides(
    a: Any,
    b: Any,
    *,
    extractor: Any = "inception",
    force: bool = False,
    batch_size: int = 50,
    num_workers: int | None = None,
    skip_bad: bool = False,
    progress: bool = False,
    **extractor_options: Any,
) -> tuple[FrechetResult, tuple[Side, Side]]:
    """:func:`fid` and the two sides it compared (statistics, provenance, N), for callers
    that report them (the CLI). ``extractor`` may also be a
    :class:`~fideval.streaming.Lazy` (built only if a side is images)."""
    lazy = (
        extractor
        if isinstance(extractor, Lazy)
        else Lazy(lambda: build_extractor(extractor, **extractor_options))
    )
    sources = [
        streaming.resolve_source(x, name=_name(x, default)) for x, default in ((a, "A"), (b, "B"))
    ]
    check_planned(sources, lazy, force=force)
    options = {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "skip_bad": skip_bad,
        "progress": progress,
    }
    side_a, side_b = (
        streaming.collect(src, lazy, features="if-fits", **options) for src in sources
    )
    return compare_sides(side_a, side_b, force=force), (side_a, side_b)


def _name(x: Any, default: str) -> str:
    return str(x) if isinstance(x, str) or hasattr(x, "__fspath__") else default


class FID:
    """FID as a metric object, torchmetrics-style.

    >>> import numpy as np
    >>> from fideval import frechet_from_features
    >>> rng = np.random.default_rng(0)
    >>> real, fake = rng.normal(size=(300, 8)), rng.normal(size=(200, 8)) + 1.0
    >>> m = FID()                       # no extractor: update() takes features
    >>> m.update(real[:100], real=True); m.update(real[100:], real=True)
    >>> m.update(fake, real=False)
    >>> r = m.compute()
    >>> bool(abs(r.value - frechet_from_features(fake, real).value) < 1e-9), r.method
    (True, 'features-nuclear')

    Args:
        extractor: ``None`` (``update`` takes features (B, d)), a registry name, or an
            extractor / ``nn.Module`` (``update`` takes images (B, C, H, W) uint8 or float
            in [0, 1]).
        reference: real-side statistics given up front (a statistics file, a
            :class:`~fideval.io.statsfile.StatsRecord` or :class:`~fideval.stats.GaussianStats`);
            it is factored once and kept by ``reset()``.
        groups: also keep K group statistics of the fake side, for :meth:`estimate`.
        weights, device, profile, dims: for a registry name.
        exact: keep the features (up to 2 GiB per side, single process) for the exact
            features route in :meth:`compute`.

    State: float64 statistics of each side (O(d²)), which :meth:`merge` adds exactly and
    :meth:`state_dict` saves; under torch.distributed :meth:`compute` merges each side
    across ranks with one all-reduce (d² + d + 1 values per side).
    """

    def __init__(
        self,
        extractor: Any = None,
        *,
        reference: Any = None,
        groups: int | None = None,
        weights: Any = None,
        device: str | torch.device | None = None,
        profile: str | None = None,
        dims: int | None = None,
        exact: bool = True,
    ) -> None:
        self.extractor = (
            None
            if extractor is None
            else build_extractor(
                extractor, weights=weights, device=device, profile=profile, dims=dims
            )
        )
        self.groups = groups
        self.exact = exact
        self._fixed_reference: StatsRecord | None = None
        self._factored: FrechetReference | None = None
        if reference is not None:
            src = streaming.resolve_source(reference, name="reference")
            if src.kind == "stats":
                self._fixed_reference = src.value
            else:  # samples: their statistics, through the one path
                side = streaming.collect(src, self.extractor)
                self._fixed_reference = side.record
        self.reset(keep_reference=False)

    # ------------------------------------------------------------------ state
    def reset(self, keep_reference: bool = True) -> None:
        """Forget the samples; the real side too unless ``keep_reference``."""
        self.fake = GroupedStats(self.groups) if self.groups else GaussianStats()
        self._fake_sink = FeatureBank(FEATURES_IN_MEMORY_BYTES) if self.exact else None
        if not keep_reference or not hasattr(self, "real"):
            self.real = GaussianStats()
            self._real_sink = FeatureBank(FEATURES_IN_MEMORY_BYTES) if self.exact else None

    def _features(self, x: Any) -> torch.Tensor:
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        if self.extractor is None:
            if t.ndim != 2:
                raise FidevalError(
                    f"FID.update: without an extractor, expected features (B, d), got shape "
                    f"{tuple(t.shape)}; give FID(extractor=...) to update with images"
                )
            return t
        return self.extractor(t)

    def update(self, x: Any, real: bool) -> None:
        """Add a batch: images (with an extractor) or features (B, d), to one side."""
        if real and self._fixed_reference is not None:
            raise FidevalError("FID.update(real=True): the reference was given up front")
        feats = self._features(x)
        stats, sink = (self.real, self._real_sink) if real else (self.fake, self._fake_sink)
        stats.update(feats)
        if sink is not None:
            sink.update(feats)

    def merge(self, other: FID) -> None:
        """Add another metric's samples (e.g. from another worker); exact."""
        self.real.merge(other.real)
        self.fake.merge(other.fake)
        self._real_sink = self._fake_sink = None  # features of both no longer at hand

    def state_dict(self) -> dict[str, Any]:
        """Plain state: both sides' statistics (numpy), for checkpoints."""
        return {
            "real": self.real.state_dict(),
            "fake": self.fake.state_dict(),
            "groups": self.groups,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        for key in ("real", "fake", "groups"):
            if key not in state:
                raise FidevalError(f"FID.load_state_dict: missing key {key!r}")
        if state["groups"] != self.groups:
            raise FidevalError(
                f"FID.load_state_dict: state has groups={state['groups']}, this metric "
                f"groups={self.groups}"
            )
        self.real = GaussianStats.from_state_dict(state["real"])
        cls = GroupedStats if self.groups else GaussianStats
        self.fake = cls.from_state_dict(state["fake"])
        self._real_sink = self._fake_sink = None

    # ------------------------------------------------------------------ results
    def _synced(self) -> tuple[Any, Any]:
        if not dist_.is_distributed():
            return self.real, self.fake
        fake = (
            dist_.all_reduce_grouped(self.fake)
            if isinstance(self.fake, GroupedStats)
            else dist_.all_reduce_stats(self.fake)
        )
        real = self.real if self._fixed_reference is not None else dist_.all_reduce_stats(self.real)
        return real, fake

    def _reference_record(self, real: GaussianStats) -> StatsRecord:
        if self._fixed_reference is not None:
            return self._fixed_reference
        if real.n < 2:
            raise FidevalError("FID.compute: need at least 2 real samples (update(x, real=True))")
        return StatsRecord(real.mean, real.cov, real.n, self._meta())

    def _meta(self) -> dict[str, Any]:
        return dict(self.extractor.provenance()) if self.extractor is not None else {}

    def compute(self) -> FrechetResult:
        """The FID of the fake side against the real side (or the given reference)."""
        real, fake = self._synced()
        total = fake.total() if isinstance(fake, GroupedStats) else fake
        if total.n < 2:
            raise FidevalError("FID.compute: need at least 2 fake samples (update(x, real=False))")
        ref = self._reference_record(real)
        if self._fixed_reference is not None and self.extractor is not None:
            check_compatible(ref.meta, self._meta(), name_a="reference", name_b="samples")
        features = [
            s.array() if s is not None else None for s in (self._fake_sink, self._real_sink)
        ]
        fake_side = Side(StatsRecord(total.mean, total.cov, total.n, self._meta()), features[0])
        real_side = Side(ref, features[1] if self._fixed_reference is None else None)
        return compare_sides(fake_side, real_side, force=True)

    def estimate(self, *, target_n: int = 50_000) -> Any:
        """Bias-corrected FID, FID∞ and the FID expected at ``target_n`` samples, with
        intervals (needs ``groups``); see :func:`fideval.estimate.estimate_fid`."""
        if not self.groups:
            raise FidevalError("FID.estimate: build the metric with groups=K (e.g. 10)")
        from .estimate import estimate_fid

        real, fake = self._synced()
        ref = self._reference_record(real)
        return estimate_fid(fake, FrechetReference(ref.mu, ref.sigma, ref.n), target_n=target_n)
