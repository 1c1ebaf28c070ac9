"""``fideval is LOGITS_OR_IMAGES``: Inception Score from a logits file or from images."""

from __future__ import annotations

import argparse

from ..errors import FidevalError
from ..metrics.inception_score import inception_score, inception_score_from_images
from ..pipeline import path_kind
from . import _common
from ._arrays import load_array


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "is",
        aliases=["inception-score"],
        help="Inception Score from classifier logits (N, C) .npy or from images",
        description="exp(E_x KL(p(y|x) ‖ p(y))) per split (float64 log-softmax), mean and "
        "ddof=0 std over splits. All C logit columns are used (1008 for the FID Inception). "
        "From images, the logits are pool3·Wᵀ without the fc bias, as in the original "
        "improved-gan code, torch-fidelity and torchmetrics.",
    )
    p.add_argument(
        "logits",
        metavar="LOGITS_OR_IMAGES",
        help="logits (N, C) .npy (not probabilities), or images (folder / image array): "
        "their FID Inception logits pool3·Wᵀ (no fc bias)",
    )
    p.add_argument("--splits", type=int, default=10, help="number of splits K (default 10)")
    p.add_argument(
        "--shuffle", action="store_true", help="permute rows with --seed before splitting"
    )
    p.add_argument(
        "--logits-with-bias",
        action="store_true",
        help="images only: add the fc bias to the logits (pool3·Wᵀ + b), which is not the "
        "Inception Score protocol (default: pool3·Wᵀ)",
    )
    _common.add_image_flags(p)
    _common.add_seed_flag(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if path_kind(args.logits) == "images":
        opts = _common.image_options(args)
        if opts["extractor"] not in ("inception", "inception-v3-fid"):
            raise FidevalError(
                f"--extractor {opts['extractor']}: the Inception Score is defined on the FID "
                "Inception's 1008 classes; use --extractor inception"
            )
        res = inception_score_from_images(
            args.logits,
            splits=args.splits,
            shuffle=args.shuffle,
            seed=args.seed,
            logits_bias=args.logits_with_bias,
            weights=opts["weights"],
            device=opts["device"],
            profile=opts["profile"] or "pytorch-fid",
            batch_size=opts["batch_size"],
            num_workers=opts["num_workers"],
            skip_bad=opts["skip_bad"],
            progress=opts["progress"],
        )
        prov = res.provenance or {}
        n, classes = int(prov["n"]), int(prov["classes"])
    else:
        if args.logits_with_bias:
            raise FidevalError(
                f"{args.logits}: --logits-with-bias applies to images only; a logits file is "
                "used as given"
            )
        logits = load_array(args.logits, what="logits")
        res = inception_score(
            logits, splits=args.splits, shuffle=args.shuffle, seed=args.seed, name=args.logits
        )
        n, classes = int(logits.shape[0]), int(logits.shape[1])
    out = {**res.as_dict(), "n": n, "classes": classes}
    if res.provenance is not None:
        out["logits"] = res.provenance["logits"]
    if args.json:
        _common.print_json(out)
    else:
        form = ""
        if res.logits_bias is not None:
            form = "; logits with fc bias" if res.logits_bias else "; logits pool3·Wᵀ, no fc bias"
        print(f"IS: {res.value:.4f} ± {res.std:.4f} (std over {res.splits} splits, ddof=0{form})")
    return 0
