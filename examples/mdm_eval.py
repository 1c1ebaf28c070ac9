"""Evaluate an MDM checkpoint on HumanML3D with fideval instead of MDM's ``eval_humanml`` loop.

Run from a checkout of github.com/GuyTevet/motion-diffusion-model (its modules are
imported below) with fideval installed::

    python /path/to/fideval/examples/mdm_eval.py \
        --model_path save/humanml_trans_enc_512/model000475000.pt \
        --fideval-replications auto --fideval-tolerance fid=0.05,r_precision=0.005

What it replaces: in ``eval/eval_humanml.py``, ``get_mdm_loader`` (the generated-motion
dataset), ``EvaluatorMDMWrapper`` and ``evaluation(...)``. The model and diffusion are
built exactly as MDM builds them; the sampler is wrapped in a function
``generate(texts, lengths) -> motions`` that fideval calls with the protocol's prompts.

The same evaluation for a model that writes motions to disk instead (no Python hook)::

    fideval motion-eval --dataset humanml --data dataset/HumanML3D --evaluator \
        t2m/text_mot_match/model/finest.tar --eval-mean dataset/t2m_mean.npy \
        --eval-std dataset/t2m_std.npy --glove glove --write-prompts prompts/
    # the model reads prompts/replication_XXX/prompts.json, writes motions.npy (N, T, 263)
    # and mm_motions.npy (mm_texts, mm_repeats - 1, T, 263) beside it, in its own normalization
    fideval motion-eval ... --motions prompts/ --generator-mean dataset/HumanML3D/Mean.npy \
        --generator-std dataset/HumanML3D/Std.npy

Deliberate differences from MDM's loop (docs/motion.md lists them all): exact FID, stable
R-precision ties, t-intervals beside the 1.96·std/√R one, input-order embeddings, and
generated motions zeroed past their length (``--pad keep``/``pad="keep"`` keeps MDM's
behaviour). MultiModality uses 100 texts by default; MDM uses 128 (``mm_texts=128``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import fideval.motion as fm

MAX_FRAMES = 196


def make_mdm_generator(
    model: Any, diffusion: Any, collate: Any, guidance: float, device: Any
) -> Any:
    """MDM's sampler as ``generate(texts, lengths) -> (B, 196, 263)`` in HumanML3D's Mean/Std."""

    @torch.no_grad()
    def generate(texts: list[str], lengths: np.ndarray) -> torch.Tensor:
        batch = [
            {"inp": torch.zeros(263, 1, MAX_FRAMES), "tokens": None, "lengths": int(n), "text": t}
            for t, n in zip(texts, lengths, strict=True)
        ]
        _, model_kwargs = collate(batch)  # builds y["mask"], y["lengths"], y["text"]
        y = {k: v.to(device) if torch.is_tensor(v) else v for k, v in model_kwargs["y"].items()}
        if guidance != 1.0:
            y["scale"] = torch.full((len(texts),), guidance, device=device)
        sample = diffusion.p_sample_loop(
            model,
            (len(texts), 263, 1, MAX_FRAMES),
            clip_denoised=False,
            model_kwargs={"y": y},
            skip_timesteps=0,
            init_image=None,
            progress=False,
            dump_steps=None,
            noise=None,
            const_noise=False,
        )
        return sample[:, :, 0].permute(0, 2, 1)  # (B, 263, 1, T) -> (B, T, 263)

    return generate


def main() -> int:
    # MDM's own argument parser, plus fideval's few options.
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--fideval-replications", default="20")
    extra.add_argument("--fideval-tolerance", default=None)
    extra.add_argument("--fideval-cache", default="fideval_cache")
    extra.add_argument("--fideval-evaluator", default="t2m/text_mot_match/model/finest.tar")
    ours, rest = extra.parse_known_args()
    sys.argv = [sys.argv[0], *rest]

    from data_loaders.get_data import get_dataset_loader  # MDM
    from data_loaders.tensors import collate  # MDM
    from utils import dist_util  # MDM
    from utils.fixseed import fixseed  # MDM
    from utils.model_util import create_model_and_diffusion, load_saved_model  # MDM
    from utils.parser_util import evaluation_parser  # MDM
    from utils.sampler_util import ClassifierFreeSampleModel  # MDM

    args = evaluation_parser()
    fixseed(args.seed)
    dist_util.setup_dist(args.device)
    loader = get_dataset_loader(name=args.dataset, batch_size=args.batch_size, num_frames=None,
                                split="test", hml_mode="eval")  # fmt: skip
    model, diffusion = create_model_and_diffusion(args, loader)
    load_saved_model(model, args.model_path, use_avg=getattr(args, "use_ema", False))
    if args.guidance_param != 1:
        model = ClassifierFreeSampleModel(model)
    model.to(dist_util.dev()).eval()

    # --- the fideval part: these lines replace get_mdm_loader + EvaluatorMDMWrapper + evaluation
    data = Path("dataset/HumanML3D")
    evaluator = fm.T2MEvaluator.from_checkpoint(
        ours.fideval_evaluator, "humanml", device=dist_util.dev()
    )
    test = fm.MotionTextSource(data, "humanml", vectorizer="glove",
                               mean="dataset/t2m_mean.npy", std="dataset/t2m_std.npy")  # fmt: skip
    generate = make_mdm_generator(model, diffusion, collate, args.guidance_param, dist_util.dev())
    reps: int | str = (
        "auto" if ours.fideval_replications == "auto" else int(ours.fideval_replications)
    )
    tol = None
    if ours.fideval_tolerance:
        tol = {k: float(v) for k, v in (p.split("=") for p in ours.fideval_tolerance.split(","))}
    result = fm.evaluate(
        generate, test, evaluator,
        generator_mean=np.load(data / "Mean.npy"), generator_std=np.load(data / "Std.npy"),
        replications=reps, tolerance=tol, batch_size=args.batch_size,
        mm_texts=128 if args.eval_mode == "mm_short" else 0, mm_repeats=30,
        cache_dir=ours.fideval_cache, progress=True,
    )  # fmt: skip
    print(result.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
