"""``fideval cmmd A B``: CMMD (Gaussian-kernel MMD² of L2-normalised embeddings, ×1000).

A and B are embedding files (N, d), or images, which go through CLIP ViT-L/14@336
(``--extractor clip-vitl14-336``, the protocol's): centre crop, PIL bicubic to 336,
CLIP normalization, L2-normalized 768-d projection. Every image is used: the original
CMMD drops the last partial batch of 32, its PyTorch port keeps it, and so does fideval.
"""

from __future__ import annotations

import argparse

from .._text import shown
from ..metrics.cmmd import SCALE, SIGMA, cmmd
from . import _common
from ._arrays import compute_dtype


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cmmd",
        help="CMMD of two image folders / arrays (through CLIP ViT-L/14@336) or embeddings",
        description="1000 · MMD² with exp(−‖x−y‖²/(2·10²)) on L2-normalised rows; the "
        "reference's biased V-statistic unless --unbiased.",
    )
    p.add_argument("a", metavar="A", help="embeddings (N, d) .npy, image folder or image array")
    p.add_argument("b", metavar="B", help="embeddings (M, d) .npy, image folder or image array")
    p.add_argument("--unbiased", action="store_true", help="U-statistic (drop diagonal terms)")
    p.add_argument(
        "--sigma", type=float, default=SIGMA, help=f"kernel bandwidth (default {SIGMA:g})"
    )
    p.add_argument("--scale", type=float, default=SCALE, help=f"multiplier (default {SCALE:g})")
    p.add_argument("--no-normalize", action="store_true", help="do not L2-normalise the rows first")
    _common.add_sample_metric_flags(p, default_extractor="clip-vitl14-336")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    a, b = _common.sample_pair(args, args.a, args.b)
    value = cmmd(
        a,
        b,
        sigma=args.sigma,
        scale=args.scale,
        unbiased=args.unbiased,
        normalize=not args.no_normalize,
        dtype=compute_dtype(args),
        device=args.device,
        names=(shown(args.a), shown(args.b)),
    )
    out = {
        "cmmd": value,
        "estimator": "unbiased" if args.unbiased else "biased (reference)",
        "sigma": args.sigma,
        "scale": args.scale,
        "n_a": int(a.shape[0]),
        "n_b": int(b.shape[0]),
        "seed": args.seed,
    }
    if args.json:
        _common.print_json(out)
    else:
        print(
            f"CMMD: {value:.6g} ({out['estimator']} estimator, σ={args.sigma:g}, ×{args.scale:g})"
        )
    return 0
