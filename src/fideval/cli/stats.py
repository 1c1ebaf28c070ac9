"""``fideval stats PATH -o OUT.npz``: statistics of features or images, saved with provenance."""

from __future__ import annotations

import argparse

from .. import distributed
from .._text import shown
from ..io.statsfile import save_stats
from ..streaming import resolve_source, statistics
from . import _common


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="compute statistics (mu, sigma, N, provenance) of features or images",
        description="Stream a 2-D features file (N, d), an image folder or an image array "
        "into float64 statistics and save them as a pytorch-fid compatible .npz.",
    )
    p.add_argument("path", help="2-D features .npy, image folder, or 4-D image array file")
    p.add_argument("-o", "--output", required=True, help="output statistics file (.npz)")
    _common.add_image_flags(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the output path, the input and the weights; then stream and save.

    Nothing is read or extracted before the output is known to be writable (a ``.npz``
    in a folder that exists or can be created) and the input is resolved.
    """
    _common.check_stats_output(args.output)
    source = resolve_source(args.path)
    distributed.init_from_env(args.device)  # under torchrun: each rank reads its share
    extractor = None
    if source.kind == "images":  # after init: under torchrun the network goes to this rank's GPU
        extractor = _common.lazy_extractor(args).get()
    stats, meta = statistics(source, extractor, **_common.stream_options(args))
    if not distributed.is_main_process():
        return 0
    out = save_stats(args.output, stats, meta)
    if args.json:
        _common.print_json({"output": str(out), "n": stats.n, "dims": stats.dim, "meta": meta})
    else:
        print(f"wrote {shown(out)}: N={stats.n}, d={stats.dim}")
    return 0
