"""``fideval plot LOG.jsonl [-o fid.png]``: FID against step from an evaluator log."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import FidevalError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="draw FID against training step from a FIDEvaluator log (JSONL)",
        description="Draws each evaluation's FID with its 95%% interval against the training "
        "step (log y axis when the values span more than 10x), marks the best checkpoint, "
        "and adds a panel of paired differences from the previous evaluation when the log "
        "has them (FIDEvaluator(paired=True)). Needs matplotlib (pip install 'fideval[plot]').",
    )
    p.add_argument("log", help="JSONL log written by FIDEvaluator(log_path=...)")
    p.add_argument(
        "-o", "--output", default=None, help="image file (default: fid.png next to the log)"
    )
    p.add_argument("--title", default=None, help="title of the plot")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..plot import plot_log
    from ..train.evaluator import read_jsonl

    log = Path(args.log)
    if not log.is_file():
        raise FidevalError(f"{log}: no such file")
    records = read_jsonl(log)
    if not records:
        raise FidevalError(f"{log}: no records (an empty or unreadable log)")
    out = Path(args.output) if args.output else log.with_name("fid.png")
    print(plot_log(records, out, title=args.title))
    return 0
