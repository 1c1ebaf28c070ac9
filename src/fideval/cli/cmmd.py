"""``fideval cmmd A B``: CMMD (Gaussian-kernel MMD² of L2-normalised embeddings, ×1000)."""

from __future__ import annotations

import argparse

from ..metrics.cmmd import SCALE, SIGMA, cmmd
from . import _common
from ._arrays import add_compute_flags, compute_dtype, load_array


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cmmd",
        help="CMMD of two embedding .npy files (e.g. CLIP; embeddings are yours)",
        description="1000 · MMD² with exp(−‖x−y‖²/(2·10²)) on L2-normalised rows; the "
        "reference's biased V-statistic unless --unbiased.",
    )
    p.add_argument("a", metavar="A", help="embeddings (N, d) .npy")
    p.add_argument("b", metavar="B", help="embeddings (M, d) .npy")
    p.add_argument("--unbiased", action="store_true", help="U-statistic (drop diagonal terms)")
    p.add_argument(
        "--sigma", type=float, default=SIGMA, help=f"kernel bandwidth (default {SIGMA:g})"
    )
    p.add_argument("--scale", type=float, default=SCALE, help=f"multiplier (default {SCALE:g})")
    p.add_argument("--no-normalize", action="store_true", help="do not L2-normalise the rows first")
    add_compute_flags(p)
    _common.add_seed_flag(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    a = load_array(args.a, what="embeddings")
    b = load_array(args.b, what="embeddings")
    value = cmmd(
        a,
        b,
        sigma=args.sigma,
        scale=args.scale,
        unbiased=args.unbiased,
        normalize=not args.no_normalize,
        dtype=compute_dtype(args),
        device=args.device,
        names=(args.a, args.b),
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
