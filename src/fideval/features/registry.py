"""Extractors by name: ``fideval.extractor("inception")``, ``"dinov2-vitl14"``, …

Each name builds an extractor of the contract in :mod:`fideval.features.base` from
``weights`` (a path, or ``None`` to look it up in the weights store and download it
when online), ``device`` and ``profile`` (``None``: the extractor's default, which is
the protocol's).

=====================  =====  ===========================  ============================
name                   dims   default profile              protocol
=====================  =====  ===========================  ============================
``inception``          2048   ``pytorch-fid``              FID (pytorch-fid, TF FID)
``dinov2-vitl14``      1024   ``edm2``                     FD_DINOv2 (EDM2)
``dinov2-vitb14``      768    ``edm2``                     FD_DINOv2, cheaper (dgm-eval)
``clip-vitl14-336``    768    ``cmmd``                     CMMD (CLIP ViT-L/14@336)
``digits``             64     ``digits-8x8-unit``          the demo's small CNN
=====================  =====  ===========================  ============================

``inception`` also takes ``dims`` (64, 192, 768 or 2048). :func:`register_extractor`
adds a name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import FidevalError

Factory = Callable[..., Any]

_FACTORIES: dict[str, Factory] = {}
# Provenance ids (what statistics files record) are accepted as names too.
_ALIASES = {"inception-v3-fid": "inception", "fid-inception": "inception", "digits-cnn": "digits"}


def register_extractor(name: str, factory: Factory) -> None:
    """Make ``extractor(name, …)`` call ``factory(weights=, device=, profile=, **options)``."""
    _FACTORIES[name] = factory


def extractor_names() -> list[str]:
    """The registered names, sorted."""
    return sorted(_FACTORIES)


def extractor(
    name: str,
    *,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
    profile: str | None = None,
    **options: Any,
) -> Any:
    """The extractor registered as ``name`` (see the table in the module doc)."""
    key = _ALIASES.get(name, name)
    if key not in _FACTORIES:
        raise FidevalError(
            f"unknown extractor {name!r}; expected one of {', '.join(extractor_names())}"
        )
    return _FACTORIES[key](weights=weights, device=device, profile=profile, **options)


def _inception(*, weights: Any, device: Any, profile: str | None, dims: int = 2048, **kw: Any):
    from .inception import InceptionExtractor

    return InceptionExtractor(
        dims, weights=weights, device=device, profile=profile or "pytorch-fid", **kw
    )


def _dinov2(arch: str) -> Factory:
    def make(*, weights: Any, device: Any, profile: str | None, **kw: Any):
        from .dinov2 import DINOv2Extractor

        return DINOv2Extractor(
            arch, weights=weights, device=device, profile=profile or "edm2", **kw
        )

    return make


def _clip(*, weights: Any, device: Any, profile: str | None, **kw: Any):
    from .clip import CLIPExtractor

    return CLIPExtractor(weights=weights, device=device, profile=profile or "cmmd", **kw)


def _digits(*, weights: Any, device: Any, profile: str | None, **kw: Any):
    from .digits import DIGITS_PROFILE, DigitsFeatureExtractor

    if weights is not None:
        raise FidevalError("the digits extractor ships its weights; weights= is not accepted")
    if profile not in (None, DIGITS_PROFILE):
        raise FidevalError(f"the digits extractor has one profile, {DIGITS_PROFILE!r}")
    return DigitsFeatureExtractor(device=device, **kw)


register_extractor("inception", _inception)
register_extractor("dinov2-vitl14", _dinov2("vitl14"))
register_extractor("dinov2-vitb14", _dinov2("vitb14"))
register_extractor("clip-vitl14-336", _clip)
register_extractor("digits", _digits)
