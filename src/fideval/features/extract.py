"""Images -> features, batch by batch.

:func:`open_stream` opens an image source (see :mod:`fideval.data.images`) with the
extractor's preprocessing (its ``worker_preprocess`` runs in the DataLoader workers);
:func:`feature_batches` applies the extractor to each batch, checking the features.
The statistics of a stream are made by :func:`fideval.streaming.statistics`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .._arrays import check_finite_rows
from ..data.images import ImageStream, iter_image_batches
from ..errors import FidevalError
from .base import network_features, worker_preprocess


def make_extractor(
    *,
    dims: int = 2048,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
    profile: str | None = None,
    extractor: str = "inception",
) -> Any:
    """The extractor named ``extractor`` (default: the FID Inception with ``dims``)."""
    from .registry import extractor as by_name

    options = {"dims": dims} if extractor in ("inception", "inception-v3-fid") else {}
    return by_name(extractor, weights=weights, device=device, profile=profile, **options)


def open_stream(
    source: Any,
    extractor: Any,
    batch_size: int,
    num_workers: int | None,
    skip_bad: bool,
    progress: bool,
) -> ImageStream:
    fast = worker_preprocess(extractor)
    if isinstance(source, ImageStream):
        expected = fast.name if fast is not None and hasattr(fast, "name") else "raw"
        if source.profile != expected:
            raise FidevalError(
                f"the image stream uses preprocessing {source.profile!r} but the extractor "
                f"{getattr(extractor, 'id', type(extractor).__name__)} expects {expected!r}"
            )
        return source
    return iter_image_batches(
        source,
        batch_size=batch_size,
        num_workers=num_workers,
        preprocess=fast,
        skip_bad=skip_bad,
        progress=progress,
    )


def feature_batches(
    source: Any,
    extractor: Any,
    *,
    batch_size: int = 50,
    num_workers: int | None = None,
    skip_bad: bool = False,
    progress: bool = False,
    with_logits: bool = False,
) -> Iterator[torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """Feature batches (B, dims) float32, or (features, logits) with ``with_logits``.

    ``source`` is anything :func:`fideval.data.images.iter_image_batches` reads, or
    an :class:`~fideval.data.images.ImageStream` (to read its ``skipped`` and
    ``description()`` afterwards). NaN/Inf features raise
    :class:`~fideval.errors.NonFiniteFeaturesError` naming the batch and rows.
    """
    stream = open_stream(source, extractor, batch_size, num_workers, skip_bad, progress)
    preprocessed = worker_preprocess(extractor) is not None
    if with_logits and not (preprocessed and hasattr(extractor, "features_and_logits")):
        raise FidevalError(
            f"extractor {getattr(extractor, 'id', type(extractor).__name__)} has no class "
            "logits; the Inception Score needs the FID Inception"
        )
    row = 0
    for b, images in enumerate(stream):
        if with_logits:
            feats, logits = extractor.features_and_logits(images)
        else:
            feats = network_features(extractor, images, preprocessed)
        try:
            check_finite_rows(feats, f"features batch {b}", row_offset=row)
        except FidevalError as exc:
            ids = ", ".join(map(str, stream.last_ids[:5]))
            raise type(exc)(f"{exc}; the batch holds images {ids} ...") from None
        row += feats.shape[0]
        yield (feats, logits) if with_logits else feats


class FeatureSink:
    """Keeps the feature batches of a stream on the CPU while they fit in ``max_bytes``.

    The exact features route of the Fréchet kernel needs the features themselves; past
    the budget the sink drops what it holds and the statistics alone are used.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._parts: list[torch.Tensor] = []
        self._bytes = 0
        self.overflowed = False

    def add(self, batch: torch.Tensor) -> None:
        if self.overflowed:
            return
        self._bytes += batch.numel() * batch.element_size()
        if self._bytes > self.max_bytes:
            self.overflowed, self._parts = True, []
            return
        self._parts.append(batch.detach().to("cpu", copy=True))

    def array(self) -> Any:
        """The features as one (N, d) numpy array, or None past the budget or when empty."""
        if self.overflowed or not self._parts:
            return None
        return torch.cat(self._parts).numpy()
