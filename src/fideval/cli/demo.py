"""``fideval demo``: a small diffusion model trained on real digits, FID in the loop."""

from __future__ import annotations

import argparse

from . import _common


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train a tiny diffusion model on sklearn's digits with in-loop FID (offline)",
        description="Trains fideval's TinyDiffusion on scikit-learn's 8×8 digits, evaluating "
        "FID in the loop with the shipped digits-CNN extractor; prints a table and writes "
        "OUT/log.jsonl and OUT/fid.png. Needs scikit-learn (pip install 'fideval[demo]').",
    )
    p.add_argument("--out", default="fideval-demo", help="output folder (default fideval-demo)")
    p.add_argument("--steps", type=int, default=None, help="training steps")
    p.add_argument("--quick", action="store_true", help="a smoke run of under a minute")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: fastest for this small model)",
    )
    _common.add_seed_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.demo import main_echo, run_demo

    _common.check_output_folder(args.out)  # before minutes of training, not after
    run_demo(
        args.out,
        steps=args.steps,
        quick=args.quick,
        seed=args.seed,
        echo=main_echo,
        threads=args.threads,
    )
    return 0
