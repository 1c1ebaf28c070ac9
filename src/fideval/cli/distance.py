"""``fideval distance A B``: the Fréchet distance between two statistics or feature files."""

from __future__ import annotations

import argparse

from .. import distributed
from ..pipeline import compare_sides, load_side
from . import _common


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distance",
        help="Fréchet distance between two statistics (.npz) or 2-D feature (.npy) files",
        description="Each of A and B is a statistics file (fideval, pytorch-fid, clean-fid, "
        "guided-diffusion or denoising-diffusion-pytorch) or a 2-D features file. With two "
        "feature files and N < d the exact features path is used.",
    )
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument(
        "--force",
        action="store_true",
        help="compare even when the provenance (extractor, weights, dims, profile) differs",
    )
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    distributed.init_from_env(None)  # under torchrun: feature files are read in shards
    a = load_side(args.a)
    b = load_side(args.b)
    result = compare_sides(a, b, force=args.force)
    if not distributed.is_main_process():
        return 0
    _common.report_fid(result, args, n_a=a.n, n_b=b.n, meta_a=a.record.meta, meta_b=b.record.meta)
    return 0
