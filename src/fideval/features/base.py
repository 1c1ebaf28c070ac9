"""The one extractor contract: images in, (B, d) float32 features out.

An extractor is a frozen :class:`torch.nn.Module` with

* ``id`` (str), ``dims`` (int), ``profile`` (str: its preprocessing, named in provenance);
* ``forward(images)``: uint8 (B, C, H, W) images, or floats in [0, 1], of the sizes its
  profile accepts → float32 features (B, dims) — grayscale repeated, alpha dropped,
  floats quantized by rounding, all inside the extractor;
* ``provenance()``: at least ``extractor``, ``weights_sha256``, ``dims``, ``profile``.

Optionally, a fast path for DataLoader workers that preprocess off the main process:

* ``worker_preprocess``: a plain, picklable callable mapping a batch of images (uint8
  NHWC array or NCHW tensor) to the network input, run in the workers;
* ``features(x)``: features of that network input.

The FID Inception, DINOv2, CLIP and the digits CNN satisfy the contract; any other
``nn.Module`` mapping [0, 1] images to features is wrapped by :func:`as_extractor`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from ..errors import FidevalError

__all__ = [
    "Extractor",
    "FrozenModule",
    "ModuleExtractor",
    "as_extractor",
    "network_features",
    "provenance_of",
    "resolve_device",
    "state_sha256",
]

REQUIRED_PROVENANCE = ("extractor", "weights_sha256", "dims", "profile")


@runtime_checkable
class Extractor(Protocol):
    """Images (B, C, H, W) uint8 or float in [0, 1] → features (B, dims) float32."""

    id: str
    dims: int
    profile: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...

    def provenance(self) -> dict[str, Any]: ...


def provenance_of(extractor: Any) -> dict[str, Any]:
    """The extractor's provenance, checked for the keys every comparison guards on."""
    prov = dict(extractor.provenance())
    missing = [k for k in REQUIRED_PROVENANCE if k not in prov]
    if missing:
        raise FidevalError(
            f"extractor {type(extractor).__name__}: provenance() lacks {missing}; expected "
            f"at least {list(REQUIRED_PROVENANCE)}"
        )
    return prov


def network_features(extractor: Any, batch: torch.Tensor, preprocessed: bool) -> torch.Tensor:
    """Features of a batch that the workers preprocessed (fast path) or of raw images."""
    return extractor.features(batch) if preprocessed else extractor(batch)


def worker_preprocess(extractor: Any) -> Callable[[Any], torch.Tensor] | None:
    """The extractor's picklable preprocessing for DataLoader workers, if it has one."""
    fn = getattr(extractor, "worker_preprocess", None)
    return fn if fn is not None and hasattr(extractor, "features") else None


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device every extractor runs on: ``device``, or CUDA when available, else the CPU.

    The one default of the package: the CLI's ``--device``, :func:`fideval.extractor`,
    :func:`fideval.fid` and the metrics all leave ``None`` to this function.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def state_sha256(state: nn.Module | Mapping[str, Any]) -> str:
    """The one weights hash of in-memory weights: SHA-256 over each entry of a state dict
    (a module's, or any mapping of tensors), keys sorted, as ``key:dtype:shape;`` then the
    raw bytes (bfloat16 as float32). A weights *file* is hashed by its bytes instead
    (:func:`fideval.io.weights.sha256_file`)."""
    items = state.state_dict() if isinstance(state, nn.Module) else state
    h = hashlib.sha256()
    for key in sorted(items):
        t = torch.as_tensor(items[key]).detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update((t.float() if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    return h.hexdigest()


def to_unit_float(images: Any) -> torch.Tensor:
    """uint8 or [0, 1] float images (B, C, H, W) → float32 in [0, 1]; checked."""
    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if x.ndim != 4:
        raise FidevalError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise FidevalError(f"expected uint8 or float images, got dtype {x.dtype}")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise FidevalError(
            f"expected float images in [0, 1], got values in [{float(x.min()):.3g}, "
            f"{float(x.max()):.3g}]"
        )
    return x.float()


class FrozenModule(nn.Module):
    """A module that stays in eval mode (``train()`` is a no-op) and knows its device.

    Every extractor is frozen: a missing ``.eval()`` changes FID (dropout, batch norm),
    so no caller can switch it back to training mode.
    """

    def train(self, mode: bool = True) -> FrozenModule:
        """Always stays in eval mode (the extractor is frozen); returns ``self``."""
        return super().train(False)

    def set_compile(self, mode: Any) -> FrozenModule:
        """``"auto"`` (compile a large job's network), ``True`` or ``False``; see
        :mod:`fideval.features.compiled`. Returns ``self``."""
        from .compiled import CompiledNet

        target = self.module if isinstance(self, ModuleExtractor) else self.net
        object.__setattr__(self, "_runner", CompiledNet(target, mode))
        return self

    def prepare(self, n_images: int | None) -> None:
        """Told by the stream how many images are coming (``compile="auto"`` decides)."""
        runner = self.__dict__.get("_runner")
        if runner is not None:
            runner.prepare(n_images, self.device)

    def run_net(self, *args: Any, **kwargs: Any) -> Any:
        """The network on its input: compiled when that was asked for and works."""
        runner = self.__dict__.get("_runner")
        if runner is not None:
            return runner(*args, **kwargs)
        net = self.module if isinstance(self, ModuleExtractor) else self.net
        return net(*args, **kwargs)

    def base_provenance(self) -> dict[str, Any]:
        """The keys every image extractor records (its own are added by ``provenance()``)."""
        return {
            "extractor": self.id,
            "weights_sha256": self.weights_sha256,
            "dims": self.dims,
            "profile": self.profile,
            "image_size": self.image_size,
            "dtype": "float32",
        }

    @property
    def device(self) -> torch.device:
        """Where the parameters live (CPU for a module without parameters)."""
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")


class NamedPreprocess:
    """A picklable batch preprocessing with a name (for DataLoader workers): ``fn(images,
    **options)``; ``name`` is the profile it implements."""

    def __init__(self, name: str, fn: Callable[..., torch.Tensor], **options: Any) -> None:
        self.name, self.fn, self.options = name, fn, options

    def __call__(self, images: Any) -> torch.Tensor:
        return self.fn(images, **self.options)

    def __repr__(self) -> str:
        return f"NamedPreprocess({self.name!r})"


def unit_images(images: Any) -> torch.Tensor:
    """A batch (uint8 or [0, 1] float; numpy NHWC or tensor NCHW) → float32 NCHW in
    [0, 1] with its own channels: what a wrapped module receives."""
    from ..data.layout import to_nchw

    return to_unit_float(to_nchw(images, rgb=False).contiguous())


class ModuleExtractor(FrozenModule):
    """Any ``nn.Module`` mapping [0, 1] float images to (B, d) features, as an extractor.

    uint8 inputs are divided by 255 (in the DataLoader workers when streamed: its
    ``worker_preprocess`` is :func:`unit_images`, channels kept as they are); the module
    is frozen and kept in eval mode; the weights' SHA-256 (over the sorted state dict)
    goes into the provenance, or the module's own ``provenance()`` when it has one.
    """

    def __init__(self, module: nn.Module, *, id: str | None = None, profile: str = "unit") -> None:
        super().__init__()
        self.module = module.requires_grad_(False)
        self.id = id or f"module:{type(module).__name__}"
        self.profile = profile
        self.weights_sha256 = state_sha256(module)
        self.dims: int | None = getattr(module, "dims", None)
        self.worker_preprocess = NamedPreprocess(profile, unit_images)
        super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(to_unit_float(images))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features of images already in [0, 1] float (B, C, H, W)."""
        param = next(self.module.parameters(), None)
        if param is not None:
            x = x.to(param.device)
        with torch.inference_mode():
            out = self.run_net(x)
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise FidevalError(f"extractor {self.id}: expected (B, d) features, got {shape}")
        if self.dims is None:
            self.dims = int(out.shape[1])
        return out.float()

    def provenance(self) -> dict[str, Any]:
        own = getattr(self.module, "provenance", None)
        if callable(own):
            return dict(own())
        return {
            "extractor": self.id,
            "weights_sha256": self.weights_sha256,
            "dims": self.dims,
            "profile": self.profile,
        }


class _CallableModule(nn.Module):
    """A plain function images → features, as a module (no weights)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn
        self.dims = getattr(fn, "dims", None)
        if hasattr(fn, "provenance"):
            self.provenance = fn.provenance

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def as_extractor(obj: Any, **kwargs: Any) -> Any:
    """``obj`` when it already satisfies :class:`Extractor`, else wrapped as a
    :class:`ModuleExtractor` (an ``nn.Module``) — a clear error for anything else."""
    if all(hasattr(obj, a) for a in ("id", "dims", "profile", "provenance")) and callable(obj):
        return obj
    if isinstance(obj, nn.Module):
        return ModuleExtractor(obj, **kwargs)
    if callable(obj):
        kwargs.setdefault("id", f"callable:{getattr(obj, '__name__', type(obj).__name__)}")
        return ModuleExtractor(_CallableModule(obj), **kwargs)
    raise FidevalError(
        f"expected an extractor (an nn.Module with id, dims, profile and provenance(), or "
        f"any nn.Module mapping [0, 1] images to features), got {type(obj).__name__}"
    )
