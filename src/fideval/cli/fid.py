"""``fideval fid A B``: FID between two image folders, image arrays, features or statistics."""

from __future__ import annotations

import argparse
from typing import Any

from .. import distributed
from ..data.features import open_features
from ..errors import FidevalError
from ..io.provenance import check_compatible
from ..pipeline import Side, compare_sides, load_side
from ..streaming import resolve_source
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
    """Shared by ``fid`` and ``distance``: two paths → early checks → Fréchet distance.

    Everything that can fail without extracting is checked first: both paths' kinds,
    empty image folders, the weights, the dimension each side will have and — when
    one side is a statistics file and the other images — the statistics' provenance
    against the extractor that will make the image side. Only then are images read.
    """
    if getattr(args, "save_stats", False):
        from . import stats

        return stats.run(argparse.Namespace(**{**vars(args), "path": args.a, "output": args.b}))
    distributed.init_from_env(getattr(args, "device", None))  # under torchrun: sharded reads
    paths = (args.a, args.b)
    sources = [resolve_source(p) for p in paths]  # each path inspected once, here
    kinds = [s.kind for s in sources]
    with_images = hasattr(args, "dims") and "images" in kinds
    if with_images:
        _common.check_image_inputs(*(p for p, k in zip(paths, kinds, strict=True) if k == "images"))
    # Statistics files are cheap: read them first, so the checks below can use them.
    sides: list[Side | None] = [load_side(s) if s.kind == "stats" else None for s in sources]
    options = _common.image_options(args) if hasattr(args, "dims") else {}
    extractor = None
    if with_images:
        # One network for both sides: the weights are loaded (and hashed) once.
        extractor = options["extractor"] = _common.build_extractor(args)
    _check_planned(paths, kinds, sides, extractor, force=args.force)
    a, b = (
        s if s is not None else load_side(src, **options)
        for src, s in zip(sources, sides, strict=True)
    )
    result = compare_sides(a, b, force=args.force)
    if distributed.is_main_process():
        _common.report_fid(
            result, args, n_a=a.n, n_b=b.n, meta_a=a.record.meta, meta_b=b.record.meta
        )
    return 0


def _check_planned(
    paths: tuple[str, str],
    kinds: list[str],
    sides: list[Side | None],
    extractor: Any,
    *,
    force: bool,
) -> None:
    """Dimensions and provenance of both sides as they will be, before any extraction.

    A statistics file's d and provenance are known; a feature file's d is in its header;
    an image side will have the extractor's d and provenance. The messages are those of
    the comparison itself (:func:`fideval.pipeline.compare_sides`), just earlier.
    """
    dims: list[int | None] = []
    metas: list[dict[str, Any] | None] = []
    for path, kind, side in zip(paths, kinds, sides, strict=True):
        if side is not None:
            dims.append(side.record.dim)
            metas.append(side.record.meta)
        elif kind == "features":
            dims.append(int(open_features(path).shape[1]))
            metas.append(None)  # a feature file records no extractor
        elif extractor is not None:
            dims.append(int(extractor.dims))
            metas.append(dict(extractor.provenance()))
        else:  # images without image flags (``distance``): known only once extracted
            return
    if dims[0] != dims[1]:
        raise FidevalError(
            f"dimension mismatch: {paths[0]} has d={dims[0]}, {paths[1]} has "
            f"d={dims[1]}" + (" (the images' extractor, --dims)" if "images" in kinds else "")
        )
    if "stats" in kinds and "images" in kinds:
        # Raises on a mismatch unless forced; its warnings come again with the result.
        check_compatible(metas[0], metas[1], name_a=paths[0], name_b=paths[1], force=force)
