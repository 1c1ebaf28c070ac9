"""fideval in place of denoising-diffusion-pytorch's ``FIDEvaluation``.

The package's ``Trainer`` calls ``trainer.fid_scorer.fid_score()`` every
``save_and_sample_every`` steps (on its main process). :func:`attach` installs a
:class:`FidevalScorer` there, so the Trainer's own loop, checkpointing and
``save_best_and_latest_only`` keep working, while fideval fixes what the built-in
evaluation gets wrong:

* cost: a chosen number of samples (default 5 000) with a bias-corrected prediction of the
  50 000-sample FID and its 95% interval, instead of 50 000 samples per evaluation;
* reference: computed from the dataset's files in sorted order with the training
  augmentation off (no horizontal flip), from exactly ``reference_n`` images, never from —
  and never advancing — the training iterator; cached under a key of everything that
  changes the number (not only the path ``results/dataset_stats.npz``);
* hygiene: EMA model in eval mode, inference mode, the training RNG untouched;
* records: ``results/fid.jsonl``, one object per evaluation.

Construct the Trainer with ``calculate_fid=False`` (its own evaluator would build
pytorch-fid's Inception and try to download weights), then call :func:`attach`.

With several processes (``accelerate launch``), the Trainer evaluates on its main process
only; the scorer then runs locally on that process (:func:`fideval.distributed.local_only`)
so no collective waits for ranks that are not evaluating, and both the generated and the
reference statistics still cover exactly the requested N.

**Paired evaluations** (``attach(..., paired=True)``, common random numbers):
``GaussianDiffusion.sample`` draws its noise with ``torch.randn(shape)`` (the initial
image) and ``torch.randn_like(img)`` (each DDPM / DDIM step) through its module's
``torch`` name. :func:`sample_with_noise` rebinds that name, in the package's modules
that define the diffusion's class and its bases, to a proxy that forwards everything to
``torch`` except those two calls, which return rows of a
:class:`~fideval.train.samplers.SampleNoise` — image j's noise comes from its own stream.
The binding is restored on exit (one sampling at a time, under a lock; another thread
running the same module's code meanwhile would see the proxy).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ... import distributed as dist_
from ...errors import FidevalError
from ..evaluator import EvalRecord, FIDEvaluator
from ..samplers import SampleNoise
from ..schedule import EveryNSteps, Plan

_PACKAGE = "denoising_diffusion_pytorch"
_PATCH_LOCK = threading.Lock()


def is_gaussian_diffusion(obj: Any) -> bool:
    """True for denoising-diffusion-pytorch's ``GaussianDiffusion`` (or a subclass) that
    samples through its ``p_sample_loop`` / ``ddim_sample`` loops. Imports nothing."""
    mro = type(obj).__mro__
    return any(
        c.__module__.split(".")[0] == _PACKAGE and c.__name__ == "GaussianDiffusion" for c in mro
    ) and all(hasattr(obj, a) for a in ("sample", "p_sample_loop", "ddim_sample"))


class _NoiseTorch:
    """``torch`` with ``randn`` / ``randn_like`` answered from a :class:`SampleNoise`."""

    def __init__(self, noise: SampleNoise) -> None:
        self._noise = noise

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    def _draw(self, shape: tuple[int, ...], device: Any, dtype: Any) -> torch.Tensor:
        if not shape or shape[0] != len(self._noise):
            raise FidevalError(
                f"paired sampling: the diffusion drew noise of shape {shape}, whose first "
                f"dimension is not the batch ({len(self._noise)}); it cannot be assigned to "
                f"samples"
            )
        return self._noise.randn(*shape[1:], device=device, dtype=dtype)

    def randn(self, *size: Any, device: Any = None, dtype: Any = None, **_: Any) -> torch.Tensor:
        if len(size) == 1 and isinstance(size[0], tuple | list | torch.Size):
            size = tuple(size[0])
        return self._draw(tuple(int(s) for s in size), device, dtype)

    def randn_like(self, x: torch.Tensor, *, device: Any = None, dtype: Any = None, **_: Any):
        return self._draw(tuple(x.shape), device or x.device, dtype or x.dtype)


@contextmanager
def _routed_noise(diffusion: Any, noise: SampleNoise) -> Iterator[None]:
    modules = {
        sys.modules[c.__module__]
        for c in type(diffusion).__mro__
        if c.__module__.split(".")[0] == _PACKAGE and c.__module__ in sys.modules
    }
    modules = {m for m in modules if getattr(m, "torch", None) is torch}
    proxy = _NoiseTorch(noise)
    with _PATCH_LOCK:
        for m in modules:
            m.torch = proxy  # type: ignore[attr-defined]
        try:
            yield
        finally:
            for m in modules:
                m.torch = torch  # type: ignore[attr-defined]


def sample_with_noise(diffusion: Any, batch_size: int, noise: SampleNoise) -> torch.Tensor:
    """``diffusion.sample(batch_size=…)`` with every noise draw taken from ``noise``
    (module docstring): image j depends on its own stream only."""
    if len(noise) != batch_size:
        raise FidevalError(
            f"paired sampling: noise holds {len(noise)} streams, expected {batch_size}"
        )
    with _routed_noise(diffusion, noise):
        return diffusion.sample(batch_size=batch_size)


class UnaugmentedImages:
    """The Trainer's image files, sorted, transformed as in training minus the flip.

    Same steps as the package's ``Dataset`` (convert, ``Resize``, ``CenterCrop``,
    ``ToTensor``: float in [0, 1]), with ``RandomHorizontalFlip`` left out.
    """

    def __init__(self, paths: list[Any], image_size: int, convert_image_to: str | None) -> None:
        from torchvision import transforms as T

        self.paths = sorted(str(p) for p in paths)
        self.mode = convert_image_to
        self.transform = T.Compose([T.Resize(image_size), T.CenterCrop(image_size), T.ToTensor()])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            if self.mode is not None and img.mode != self.mode:
                img = img.convert(self.mode)
            return self.transform(img)


class FidevalScorer:
    """Duck-typed replacement of ``FIDEvaluation``: ``fid_score() -> float``."""

    def __init__(self, trainer: Any, evaluator: FIDEvaluator, plan: Plan) -> None:
        self.trainer = trainer
        self.evaluator = evaluator
        self.plan = plan
        self.last: EvalRecord | None = None

    def fid_score(self) -> float:
        with dist_.local_only():
            self.last = self.evaluator.evaluate(int(self.trainer.step), plan=self.plan)
        return self.last.fid


def attach(
    trainer: Any,
    extractor: Any,
    *,
    samples: int = 5_000,
    tolerance: float | None = None,
    mode: str = "fixed",
    reference_n: int | None = None,
    batch_size: int | None = None,
    log_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    **evaluator_options: Any,
) -> FidevalScorer:
    """Install fideval as ``trainer.fid_scorer``; returns the scorer.

    Args:
        trainer: a ``denoising_diffusion_pytorch.Trainer`` built with ``calculate_fid=False``.
        extractor: images in [0, 1] → features (e.g. ``fideval.extractor("inception")``).
        samples: generated samples per evaluation (the cap in adaptive mode).
        tolerance: adaptive mode's target 95% half-width (FID units).
        mode: ``fixed``, ``adaptive`` or ``full`` (plain FID at ``samples``).
        reference_n: reference images (default: all files of the dataset).
        log_path: JSONL log (default ``<results_folder>/fid.jsonl``).
    """
    if not hasattr(trainer, "ds") or not hasattr(trainer, "ema"):
        raise FidevalError("attach: expected a denoising_diffusion_pytorch Trainer")
    if mode == "adaptive" and tolerance is None:
        raise FidevalError("attach: mode='adaptive' needs a tolerance")
    ds = trainer.ds
    convert_to = {1: "L", 3: "RGB", 4: "RGBA"}.get(int(trainer.channels))
    reference = UnaugmentedImages(ds.paths, ds.image_size, convert_to)
    results = Path(getattr(trainer, "results_folder", "."))
    evaluator = FIDEvaluator(
        trainer.ema.ema_model,
        reference,
        extractor,
        batch_size=batch_size or trainer.batch_size,
        seed=seed,
        log_path=log_path or results / "fid.jsonl",
        cache_dir=cache_dir or results / "fideval-cache",
        reference_n=reference_n,
        device=trainer.device,
        # Describes the Trainer's own cadence (for the projected cost); the Trainer decides.
        schedule=EveryNSteps(
            int(trainer.save_and_sample_every), n=int(samples), mode=mode, tolerance=tolerance
        ),
        **evaluator_options,
    )
    scorer = FidevalScorer(trainer, evaluator, Plan(mode, int(samples), tolerance))
    trainer.fid_scorer = scorer
    trainer.calculate_fid = bool(getattr(trainer.accelerator, "is_main_process", True))
    return scorer
