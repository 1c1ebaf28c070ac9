"""``fideval kid A B``: Kernel Inception Distance between two feature files."""

from __future__ import annotations

import argparse

from ..metrics.kid import kid
from . import _common
from ._arrays import compute_dtype


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kid",
        help="Kernel Inception Distance (unbiased MMD², cubic kernel) of two .npy feature files",
        description="Mean unbiased MMD² with k(x,y) = (xᵀy/d + 1)³ over S subsets of size M "
        "drawn without replacement; kid_std is the ddof=0 spread of the subset values.",
    )
    p.add_argument("a", metavar="A", help="features (N, d) .npy")
    p.add_argument("b", metavar="B", help="features (M, d) .npy")
    p.add_argument("--subsets", type=int, default=100, help="number of subsets S (default 100)")
    p.add_argument("--subset-size", type=int, default=1000, help="rows per subset M (default 1000)")
    p.add_argument(
        "--full",
        action="store_true",
        help="deterministic unbiased MMD² of the full sets (S=1, M=N; chunked)",
    )
    _common.add_sample_metric_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    a, b = _common.sample_pair(args, args.a, args.b)
    res = kid(
        a,
        b,
        subsets=1 if args.full else args.subsets,
        subset_size=None if args.full else args.subset_size,
        seed=args.seed,
        dtype=compute_dtype(args),
        device=args.device,
        names=(args.a, args.b),
    )
    out = {**res.as_dict(), "n_a": int(a.shape[0]), "n_b": int(b.shape[0]), "seed": args.seed}
    if args.json:
        _common.print_json(out)
    else:
        print(f"KID: {res.value:.6g} ± {res.std:.3g} (std over {res.subsets} subsets, ddof=0)")
    return 0
