"""``fideval compare A B REF``: FID(A) − FID(B) with a 95% interval and a p-value."""

from __future__ import annotations

import argparse

from ..suite import compare
from . import _common


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="FID(A) − FID(B) against REF with a 95%% interval and a p-value (paired by "
        "default: row i of A and B from the same noise)",
        description="A and B are samples (folders, image arrays, 2-D features); REF is "
        "samples or statistics. Paired (default): row i of A and row i of B came from the "
        "same noise (see docs/training.md), which makes the interval several times "
        "narrower; --unpaired for independent samples. The interval comes from per-sample "
        "influence values of each Fréchet distance; reference samples add the reference's "
        "own noise, reference statistics make the interval conditional on it.",
    )
    p.add_argument("a", metavar="A", help="samples of the first model")
    p.add_argument("b", metavar="B", help="samples of the second model")
    p.add_argument("ref", metavar="REF", help="reference samples or statistics")
    p.add_argument("--unpaired", action="store_true", help="A and B are independent draws")
    _common.add_image_flags(p)
    _common.add_force_flag(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = compare(
        args.a,
        args.b,
        args.ref,
        extractor=_common.lazy_extractor(args),
        paired=not args.unpaired,
        force=args.force,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        progress=not args.no_progress,
    )
    if args.json:
        _common.print_json(res.to_dict())
    else:
        lo, hi = res.ci95
        kind = "paired" if res.paired else "unpaired"
        print(f"FID(A) = {res.fid_a:.4f}   FID(B) = {res.fid_b:.4f}")
        print(
            f"FID(A) − FID(B) = {res.difference:.4f}, 95% interval [{lo:.4f}, {hi:.4f}], "
            f"p = {res.p_value:.3g} ({kind}, N = {res.n})"
        )
    _common.warn_all(res.warnings)
    return 0
