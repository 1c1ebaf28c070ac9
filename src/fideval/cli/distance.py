"""``fideval distance A B``: the Fréchet distance between two statistics or feature files."""

from __future__ import annotations

import argparse

from ..api import fid_sides
from ..errors import FidevalError
from ..streaming import resolve_source
from . import _common


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distance",
        help="Fréchet distance between two statistics (.npz) or 2-D feature (.npy) files",
        description="Each of A and B is a statistics file (fideval, pytorch-fid, clean-fid, "
        "guided-diffusion or denoising-diffusion-pytorch) or a 2-D features file. With two "
        "feature files the exact features route is used at any N. (`fideval fid` also takes "
        "images.)",
    )
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    _common.add_force_flag(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sources = [resolve_source(p) for p in (args.a, args.b)]
    for src in sources:
        if src.kind == "images":
            raise FidevalError(
                f"{src.name}: holds images; `fideval distance` takes statistics or feature "
                f"files — use `fideval fid {args.a} {args.b}` for images"
            )
    result, (a, b) = fid_sides(*sources, extractor=None, force=args.force)
    _common.report_fid(result, args, n_a=a.n, n_b=b.n, meta_a=a.meta, meta_b=b.meta)
    return 0
