"""``fideval features SRC -o F.npy``: extract features once, score them many times.

The output is a float32 (N, d) ``.npy`` (written atomically) that ``fid``, ``distance``,
``kid``, ``prdc``, ``estimate`` and ``stats`` all read; ``--logits`` writes the FID
Inception's 1008 class logits (pool3·Wᵀ, no fc bias) for ``fideval is`` instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .. import distributed
from .._text import shown
from ..errors import FidevalError
from ..io.atomic import atomic_write, check_writable
from ..streaming import collect, resolve_source
from . import _common


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="extract the features (or Inception logits) of images into a .npy file",
        description="Run an image folder or image array file through the extractor once and "
        "save the features as a float32 (N, d) .npy, which every other subcommand reads.",
    )
    p.add_argument("path", help="image folder or image array file (.npy/.npz)")
    p.add_argument("-o", "--output", required=True, help="output features file (.npy)")
    p.add_argument(
        "--logits",
        action="store_true",
        help="save the FID Inception's 1008 logits (for `fideval is`) instead of features",
    )
    _common.add_image_flags(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = Path(args.output)
    if target.suffix != ".npy":
        raise FidevalError(f"{args.output}: features files end in .npy; e.g. features.npy")
    check_writable(target)
    source = resolve_source(args.path)
    if source.kind != "images":
        raise FidevalError(f"{source.name}: expected images (a folder or an image array file)")
    if distributed.world_size() > 1:
        raise FidevalError("fideval features runs in one process (each rank would hold a share)")
    extractor = _common.lazy_extractor(args)
    extractor.get()  # the weights are checked before any image is read
    side = collect(
        source,
        extractor,
        features="required",
        logits=args.logits,
        feature_cap=1 << 62,
        **_common.stream_options(args),
    )
    feats = np.ascontiguousarray(side.logits if args.logits else side.features, dtype=np.float32)
    with atomic_write(target) as fh:
        np.save(fh, feats)
    what = "logits" if args.logits else "features"
    if args.json:
        _common.print_json(
            {
                "output": str(target),
                "n": feats.shape[0],
                "dims": feats.shape[1],
                "kind": what,
                "provenance": extractor.get().provenance(),
            }
        )
    else:
        print(f"wrote {shown(target)}: {what} N={feats.shape[0]}, d={feats.shape[1]}")
    return 0
