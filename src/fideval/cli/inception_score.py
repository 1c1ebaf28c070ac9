"""``fideval is LOGITS_OR_IMAGES``: Inception Score from a logits file or from images."""

from __future__ import annotations

import argparse

from ..errors import FidevalError
from ..metrics.inception_score import inception_score, logits_form
from ..streaming import collect, resolve_source
from . import _common


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
    source = resolve_source(args.logits)
    extra: dict = {}
    if source.kind == "images":
        from ..features.registry import spec

        if spec(args.extractor).name != "inception":
            raise FidevalError(
                f"--extractor {args.extractor}: the Inception Score is defined on the FID "
                "Inception's 1008 classes; use --extractor inception"
            )
        extra = {"logits_bias": True} if args.logits_with_bias else {}
        lazy = _common.lazy_extractor(args, **extra)
        side = collect(source, lazy, logits=True, **_common.stream_options(args))
        logits, name = side.logits, f"{source.name} logits"
    elif source.kind == "features":
        if args.logits_with_bias:
            raise FidevalError(
                f"{source.name}: --logits-with-bias applies to images only; a logits file is "
                "used as given"
            )
        logits, name = source.value, source.name
    else:
        raise FidevalError(
            f"{source.name}: a statistics file; the Inception Score needs logits (N, C) or images"
        )
    res = inception_score(
        logits, splits=args.splits, shuffle=args.shuffle, seed=args.seed, name=name
    )
    out = {**res.to_dict(), "n": int(logits.shape[0]), "classes": int(logits.shape[1])}
    if source.kind == "images":
        out["logits"] = logits_form(args.logits_with_bias)
        out["logits_bias"] = bool(args.logits_with_bias)
    if args.json:
        _common.print_json(out)
    else:
        form = ""
        if source.kind == "images":
            form = (
                "; logits with fc bias"
                if args.logits_with_bias
                else "; logits pool3·Wᵀ, no fc bias"
            )
        print(f"IS: {res.value:.4f} ± {res.std:.4f} (std over {res.splits} splits, ddof=0{form})")
    _common.warn_all(res.warnings)
    return 0
