"""Train denoising-diffusion-pytorch's Unet + GaussianDiffusion with FID by fideval.

    pip install denoising-diffusion-pytorch
    python examples/denoising_diffusion_pytorch_trainer.py --data DIR --steps 2000 \\
        --results results/ [--extractor inception --weights pt_inception-2015-12-05-6726825d.pth]

The Trainer is built with ``calculate_fid=False`` and fideval is attached as its
``fid_scorer``: every ``--every`` steps it evaluates from ``--samples`` samples (not
50 000), predicts the 50 000-sample FID with a 95% interval, and appends a record to
``RESULTS/fid.jsonl``. The reference statistics come from the image files without the
training flip, are cached in ``RESULTS/fideval-cache`` under a key of everything that
changes them, and never touch the training iterator.

``--extractor digits`` uses fideval's small digits CNN (8×8 grayscale images, e.g. the
sklearn digits written as PNGs) — fast, and offline.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def build_extractor(name: str, weights: str | None, image_size: int):
    import fideval

    if name == "digits" and image_size != 8:
        raise SystemExit("--extractor digits needs --image-size 8 (8×8 grayscale images)")
    return fideval.extractor(name, weights=weights)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder of training images")
    ap.add_argument("--steps", type=int, default=1000, help="training steps")
    ap.add_argument("--results", default="results", help="results folder")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--every", type=int, default=None, help="evaluate every N steps")
    ap.add_argument("--samples", type=int, default=5000, help="generated samples per evaluation")
    ap.add_argument("--extractor", choices=("inception", "digits"), default="inception")
    ap.add_argument("--weights", default=None, help="Inception weights (pytorch-fid format)")
    ap.add_argument("--sampling-steps", type=int, default=25, help="DDIM steps for sampling")
    args = ap.parse_args(argv)

    from denoising_diffusion_pytorch import GaussianDiffusion, Trainer, Unet

    from fideval.train.integrations.denoising_diffusion_pytorch import attach

    model = Unet(dim=16, dim_mults=(1, 2), channels=args.channels, flash_attn=False)
    diffusion = GaussianDiffusion(
        model,
        image_size=args.image_size,
        timesteps=200,
        sampling_timesteps=args.sampling_steps,  # DDIM: evaluation cost is in the sampler
    )
    every = args.every or max(1, args.steps // 4)
    trainer = Trainer(
        diffusion,
        args.data,
        train_batch_size=args.batch_size,
        train_num_steps=args.steps,
        save_and_sample_every=every,
        num_samples=math.isqrt(min(16, args.samples)) ** 2,
        results_folder=args.results,
        calculate_fid=False,  # fideval replaces the built-in evaluation below
        amp=False,
    )
    extractor = build_extractor(args.extractor, args.weights, args.image_size)
    scorer = attach(trainer, extractor, samples=args.samples, batch_size=max(args.batch_size, 64))
    trainer.train()
    log = Path(args.results) / "fid.jsonl"
    for record in scorer.evaluator.records:
        lo, hi = record.fid_ci95
        print(
            f"step {record.step}: FID {record.fid:.3f} [{lo:.3f}, {hi:.3f}] "
            f"from {record.n} samples in {record.seconds:.1f} s"
        )
    print(f"log: {log}")


if __name__ == "__main__":
    main()
