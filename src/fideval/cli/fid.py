"""``fideval fid A B``: FID between two image folders, image arrays, features or statistics."""

from __future__ import annotations

import argparse

from .. import distributed
from ..api import fid_sides
from . import _common


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fid",
        help="FID between two image folders / image arrays / feature files / statistics files",
        description="Each of A and B is a folder of images (recursive), an image array file "
        "(.npy/.npz, N x H x W x C), a 2-D features .npy, or a statistics .npz. Images go "
        "through --extractor (default: the FID Inception-v3) with its preprocessing profile; "
        "the two sides must have the same provenance (extractor, weights, dims, profile) "
        "unless --force.",
    )
    p.add_argument("a", metavar="PATH_A")
    p.add_argument("b", metavar="PATH_B")
    p.add_argument(
        "--save-stats",
        action="store_true",
        help="as pytorch-fid: compute the statistics of PATH_A and save them to PATH_B (.npz) "
        "instead of comparing (the same as `fideval stats PATH_A -o PATH_B`)",
    )
    _common.add_image_flags(p)
    _common.add_force_flag(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Two paths, resolved once → early checks → one pass per side → Fréchet distance.

    Everything that can fail without extracting is checked first: both paths' kinds,
    the weights, the dimension each side will have and — when one side is statistics
    and the other images — the statistics' provenance against the extractor.
    """
    if args.save_stats:
        from . import stats

        return stats.run(argparse.Namespace(**{**vars(args), "path": args.a, "output": args.b}))
    distributed.init_from_env(args.device)  # under torchrun: sharded reads
    result, (a, b) = fid_sides(
        args.a,
        args.b,
        extractor=_common.lazy_extractor(args),
        force=args.force,
        **_common.stream_options(args),
    )
    if distributed.is_main_process():
        _common.report_fid(result, args, n_a=a.n, n_b=b.n, meta_a=a.meta, meta_b=b.meta)
    return 0
