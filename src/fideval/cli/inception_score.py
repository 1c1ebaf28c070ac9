"""``fideval is LOGITS``: Inception Score from a logits file."""

from __future__ import annotations

import argparse

from ..metrics.inception_score import inception_score
from ..pipeline import features_from_path, path_kind
from . import _common
from ._arrays import load_array


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "is",
        aliases=["inception-score"],
        help="Inception Score from classifier logits (N, C) .npy",
        description="exp(E_x KL(p(y|x) ‖ p(y))) per split (float64 log-softmax), mean and "
        "ddof=0 std over splits. All C logit columns are used (1008 for the FID Inception).",
    )
    p.add_argument(
        "logits",
        metavar="LOGITS_OR_IMAGES",
        help="logits (N, C) .npy (not probabilities), or images (folder / image array): "
        "their FID Inception logits",
    )
    p.add_argument("--splits", type=int, default=10, help="number of splits K (default 10)")
    p.add_argument(
        "--shuffle", action="store_true", help="permute rows with --seed before splitting"
    )
    _common.add_image_flags(p)
    _common.add_seed_flag(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if path_kind(args.logits) == "images":
        logits = features_from_path(args.logits, logits=True, **_common.image_options(args))
    else:
        logits = load_array(args.logits, what="logits")
    res = inception_score(
        logits, splits=args.splits, shuffle=args.shuffle, seed=args.seed, name=args.logits
    )
    out = {**res.as_dict(), "n": int(logits.shape[0]), "classes": int(logits.shape[1])}
    if args.json:
        _common.print_json(out)
    else:
        print(f"IS: {res.value:.4f} ± {res.std:.4f} (std over {res.splits} splits, ddof=0)")
    return 0
