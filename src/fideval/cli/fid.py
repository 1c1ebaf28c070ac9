"""``fideval fid A B``: FID between two image folders, image arrays, features or statistics."""

from __future__ import annotations

import argparse

from .. import distributed
from ..pipeline import compare_sides, load_side, path_kind
from . import _common


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fid",
        help="FID between two image folders / image arrays / feature files / statistics files",
        description="Each of A and B is a folder of images (recursive), an image array file "
        "(.npy/.npz, N x H x W x C), a 2-D features .npy, or a statistics .npz. Images go "
        "through the FID Inception-v3 with the chosen preprocessing profile; the two sides "
        "must have the same provenance (extractor, weights, dims, profile) unless --force.",
    )
    p.add_argument("a", metavar="PATH_A")
    p.add_argument("b", metavar="PATH_B")
    _common.add_image_flags(p)
    _common.add_force_flag(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Shared by ``fid`` and ``distance``: two paths → provenance guard → Fréchet distance."""
    distributed.init_from_env(getattr(args, "device", None))  # under torchrun: sharded reads
    options = _common.image_options(args) if hasattr(args, "dims") else {}
    if options and "images" in (path_kind(args.a), path_kind(args.b)):
        from ..features.extract import make_extractor

        # One network for both sides: the weights are loaded (and hashed) once.
        options["extractor"] = make_extractor(
            dims=args.dims, weights=args.weights, device=args.device, profile=args.profile
        )
    a = load_side(args.a, **options)
    b = load_side(args.b, **options)
    result = compare_sides(a, b, force=args.force)
    if distributed.is_main_process():
        _common.report_fid(
            result, args, n_a=a.n, n_b=b.n, meta_a=a.record.meta, meta_b=b.record.meta
        )
    return 0
