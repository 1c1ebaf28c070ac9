"""``fideval eval A B --metrics fid,kid,is,prdc``: several metrics from one extraction."""

from __future__ import annotations

import argparse

from ..suite import METRICS, evaluate, parse_metrics
from . import _common


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="several metrics (fid, kid, prdc, is, cmmd) of A (generated) against B "
        "(reference) from one extraction",
        description="Each side is read and extracted once; every metric then uses the same "
        "features (and, for is, the logits of A taken in the same pass), so each value equals "
        "its own subcommand's. A is the generated side, B the reference: is is computed on A, "
        "prdc takes B as real. Memory: fid keeps O(d²) statistics per side (plus the features "
        "for its exact route while they fit 2 GiB); kid, prdc and cmmd keep the features of "
        "images in memory up to 2 GiB of float32 per side (feature files are memory-mapped); "
        "is keeps A's 1008 logits.",
    )
    p.add_argument("a", metavar="A", help="generated: folder, image array, features or statistics")
    p.add_argument("b", metavar="B", help="reference: folder, image array, features or statistics")
    p.add_argument(
        "--metrics",
        default="fid",
        help=f"comma-separated, any of {','.join(METRICS)} (default fid)",
    )
    p.add_argument(
        "--cache",
        metavar="DIR",
        default=None,
        help="keep extracted features in DIR, keyed by the extractor and every file's name, "
        "size and modification time; a second run on the same images extracts nothing",
    )
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default 100)")
    p.add_argument(
        "--kid-subset-size", type=int, default=1000, help="KID rows per subset (default 1000)"
    )
    p.add_argument("--k", type=int, default=5, help="PRDC nearest neighbours (default 5)")
    p.add_argument("--splits", type=int, default=10, help="IS splits (default 10)")
    _common.add_image_flags(p)
    _common.add_seed_flag(p)
    _common.add_force_flag(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = parse_metrics(args.metrics)
    result = evaluate(
        args.a,
        args.b,
        names,
        extractor=_common.lazy_extractor(args),
        cache=args.cache,
        force=args.force,
        kid_options={
            "subsets": args.kid_subsets,
            "subset_size": args.kid_subset_size,
            "seed": args.seed,
            "device": args.device,
        },
        prdc_options={"k": args.k, "seed": args.seed, "device": args.device},
        is_options={"splits": args.splits, "seed": args.seed},
        cmmd_options={"device": args.device},
        **_common.stream_options(args),
    )
    if args.json:
        _common.print_json(result.to_dict())
    else:
        for key, value in result.values.items():
            print(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")
    _common.warn_all(result.warnings)
    return 0
