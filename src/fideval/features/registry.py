"""Extractors by name, and the one builder: :func:`extractor`.

Every module that needs a feature extractor calls ``fideval.extractor(name_or_module,
**options)``. A name is looked up in the registry; an ``nn.Module`` (or an object that
already satisfies the contract of :mod:`fideval.features.base`) is wrapped or returned
as it is. The options a name takes are the keyword parameters of its factory: an option
it does not take (``dims=`` for CLIP) is an error, never silently ignored. An option
given as ``None`` means "the extractor's default".

Adding an extractor is one module plus one :func:`register_extractor` line; the CLI's
``--extractor`` choices and help, and the table in ``docs/extractors.md``, come from
:func:`registered`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import FidevalError

Factory = Callable[..., Any]


@dataclass(frozen=True)
class ExtractorSpec:
    """A registered extractor: its name, what it is for, and its factory.

    ``dims`` and ``profile`` are its defaults (shown in help texts); ``options`` are the
    keyword parameters its factory accepts, read from the factory's signature.
    """

    name: str
    factory: Factory
    dims: int
    profile: str
    protocol: str
    aliases: tuple[str, ...] = ()

    @property
    def options(self) -> tuple[str, ...]:
        params = inspect.signature(self.factory).parameters.values()
        return tuple(
            p.name
            for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and not p.name.startswith("_")
        )

    def choices(self, option: str) -> tuple[Any, ...] | None:
        """The allowed values of ``option`` when the factory declares them (``CHOICES``)."""
        return getattr(self.factory, "CHOICES", {}).get(option)


_SPECS: dict[str, ExtractorSpec] = {}
_ALIASES: dict[str, str] = {}


def register_extractor(
    name: str,
    factory: Factory,
    *,
    dims: int,
    profile: str,
    protocol: str,
    aliases: tuple[str, ...] = (),
) -> None:
    """Make ``extractor(name, **options)`` call ``factory(**options)``.

    ``aliases`` are other names accepted for it (e.g. the id its statistics files
    record). ``dims``, ``profile`` and ``protocol`` describe its defaults for help texts.
    """
    _SPECS[name] = ExtractorSpec(name, factory, int(dims), profile, protocol, tuple(aliases))
    for alias in aliases:
        _ALIASES[alias] = name


def extractor_names() -> list[str]:
    """The registered names, sorted (aliases not included)."""
    return sorted(_SPECS)


def registered() -> list[ExtractorSpec]:
    """The registered extractors, sorted by name."""
    return [_SPECS[n] for n in extractor_names()]


def spec(name: str) -> ExtractorSpec:
    """The registry entry of ``name`` (or of one of its aliases)."""
    key = _ALIASES.get(name, name)
    if key not in _SPECS:
        known = ", ".join(extractor_names())
        raise FidevalError(f"unknown extractor {name!r}; expected one of {known}")
    return _SPECS[key]


def canonical_name(provenance_id: str) -> str | None:
    """The registry name of an extractor id recorded in provenance, if registered."""
    key = _ALIASES.get(provenance_id, provenance_id)
    return key if key in _SPECS else None


def extractor(name_or_module: Any = "inception", **options: Any) -> Any:
    """The one extractor builder.

    ``name_or_module``: a registry name (``"inception"``, ``"dinov2-vitl14"``, …, see
    ``fideval.extractor_names()``), an extractor, or any ``nn.Module`` mapping [0, 1]
    images (B, C, H, W) to features (B, d). ``options`` (``weights=``, ``device=``,
    ``profile=``, ``dims=`` …) are passed to the named extractor's factory; ``None``
    values mean its default. An option the extractor does not take is an error.
    Every extractor also takes ``compile=`` (``"auto"``, the default for a name:
    ``torch.compile`` when a job is large enough to pay; ``True``; ``False``; see
    :mod:`fideval.features.compiled`).
    """
    given = {k: v for k, v in options.items() if v is not None}
    mode = given.pop("compile", None)
    if not isinstance(name_or_module, str):
        from .base import as_extractor

        wrap = {k: given.pop(k) for k in ("id", "profile") if k in given}
        if given:
            raise FidevalError(
                f"extractor options {sorted(given)} apply to a registry name; "
                f"{type(name_or_module).__name__} is already built"
            )
        return _with_compile(as_extractor(name_or_module, **wrap), "auto" if mode is None else mode)
    entry = spec(name_or_module)
    unknown = sorted(set(given) - set(entry.options))
    if unknown:
        takes = ", ".join(f"{o}=" for o in entry.options) or "no options"
        raise FidevalError(
            f"extractor {entry.name!r} does not take {', '.join(f'{u}=' for u in unknown)}; "
            f"it takes {takes}"
        )
    for key, value in given.items():
        allowed = entry.choices(key)
        if allowed is not None and value not in allowed:
            raise FidevalError(
                f"extractor {entry.name!r}: {key}={value!r} is not one of "
                f"{', '.join(map(str, allowed))}"
            )
    return _with_compile(entry.factory(**given), "auto" if mode is None else mode)


def _with_compile(ext: Any, mode: Any) -> Any:
    """Set the extractor's compile mode (every extractor takes ``compile=``)."""
    if mode is not None and hasattr(ext, "set_compile"):
        ext.set_compile(mode)
    return ext


# --------------------------------------------------------------------------- built-ins


def _inception(
    *,
    dims: int = 2048,
    weights: Any = None,
    device: Any = None,
    profile: str = "pytorch-fid",
    logits_bias: bool = False,
) -> Any:
    from .inception import InceptionExtractor

    return InceptionExtractor(
        dims, weights=weights, device=device, profile=profile, logits_bias=logits_bias
    )


_inception.CHOICES = {"dims": (64, 192, 768, 2048), "logits_bias": (False, True)}  # type: ignore[attr-defined]


def _dinov2(arch: str) -> Factory:
    def make(*, weights: Any = None, device: Any = None, profile: str = "edm2") -> Any:
        from .dinov2 import DINOv2Extractor

        return DINOv2Extractor(arch, weights=weights, device=device, profile=profile)

    return make


def _clip(*, weights: Any = None, device: Any = None) -> Any:
    from .clip import CLIPExtractor

    return CLIPExtractor(weights=weights, device=device, profile="cmmd")


def _digits(*, device: Any = None) -> Any:
    from .digits import DigitsFeatureExtractor

    return DigitsFeatureExtractor(device=device)


register_extractor(
    "inception",
    _inception,
    dims=2048,
    profile="pytorch-fid",
    protocol="FID (pytorch-fid, TF FID)",
    aliases=("inception-v3-fid", "fid-inception"),
)
register_extractor(
    "dinov2-vitl14", _dinov2("vitl14"), dims=1024, profile="edm2", protocol="FD_DINOv2 (EDM2)"
)
register_extractor(
    "dinov2-vitb14",
    _dinov2("vitb14"),
    dims=768,
    profile="edm2",
    protocol="FD_DINOv2, cheaper (dgm-eval)",
)
register_extractor(
    "clip-vitl14-336", _clip, dims=768, profile="cmmd", protocol="CMMD (CLIP ViT-L/14@336)"
)
register_extractor(
    "digits",
    _digits,
    dims=64,
    profile="digits-8x8-unit",
    protocol="the demo's small CNN",
    aliases=("digits-cnn",),
)
