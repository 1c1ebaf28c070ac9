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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ... import distributed as dist_
from ...errors import FidevalError
from ..evaluator import EvalRecord, FIDEvaluator
from ..schedule import EveryNSteps, Plan


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
