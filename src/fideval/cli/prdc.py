"""``fideval prdc REAL FAKE``: precision, recall, density and coverage."""

from __future__ import annotations

import argparse

from .._text import shown
from ..metrics.prdc import prdc
from . import _common
from ._arrays import compute_dtype


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prdc",
        help="k-NN precision/recall (Kynkäänniemi) and density/coverage (Naeem) of two "
        "feature files or image folders / arrays",
        description="One k for all four metrics unless --k-pr / --k-dc are given. Strict '<' "
        "as in the prdc package; repeated rows and fakes that copy real rows are decided "
        "exactly (each distance computed once). Chunked k-NN: no N×N matrix.",
    )
    p.add_argument(
        "real", metavar="REAL", help="real features (N, d) .npy, image folder or image array"
    )
    p.add_argument(
        "fake", metavar="FAKE", help="generated features (M, d) .npy, image folder or image array"
    )
    p.add_argument("--k", type=int, default=5, help="nearest neighbours for all four (default 5)")
    p.add_argument("--k-pr", type=int, default=None, help="k for precision/recall (default --k)")
    p.add_argument("--k-dc", type=int, default=None, help="k for density/coverage (default --k)")
    p.add_argument(
        "--max-samples",
        type=int,
        default=None,
        help="subsample each set to at most this many rows (without replacement, --seed)",
    )
    _common.add_sample_metric_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    real, fake = _common.sample_pair(args, args.real, args.fake)
    res = prdc(
        real,
        fake,
        k=args.k,
        k_pr=args.k_pr,
        k_dc=args.k_dc,
        max_samples=args.max_samples,
        seed=args.seed,
        dtype=compute_dtype(args),
        device=args.device,
        names=(shown(args.real), shown(args.fake)),
    )
    out = {**res.to_dict(), "seed": args.seed}
    if args.json:
        _common.print_json(out)
    else:
        print(
            f"precision {res.precision:.4f}  recall {res.recall:.4f}  "
            f"density {res.density:.4f}  coverage {res.coverage:.4f}  "
            f"(k_pr={res.k_pr}, k_dc={res.k_dc}, N={res.n_real}, M={res.n_fake})"
        )
    return 0
