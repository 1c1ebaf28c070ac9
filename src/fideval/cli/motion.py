"""``fideval motion``: text-to-motion suite (R-precision, Matching Score, FID, Diversity, MM)."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..errors import FidevalError
from ..metrics.motion import motion_suite
from ..metrics.replicate import replicate
from . import _common
from ._arrays import load_array


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "motion",
        help="HumanML3D-style motion metrics from evaluator embeddings (.npy)",
        description="R-precision over consecutive pools of --pool pairs (last incomplete pool "
        "dropped), Matching Score over the same pairs, FID of MOTION vs GT, Diversity and "
        "MultiModality from random pairs.",
    )
    p.add_argument(
        "--text", required=True, help="text embeddings (N, d) .npy, paired with --motion"
    )
    p.add_argument("--motion", required=True, help="generated motion embeddings (N, d) .npy")
    p.add_argument("--gt", required=True, help="ground-truth motion embeddings (N_gt, d) .npy")
    p.add_argument("--mm", help="MultiModality embeddings (num_texts, num_repeats, d) .npy")
    p.add_argument("--pool", type=int, default=32, help="R-precision pool size (default 32)")
    p.add_argument("--top-k", type=int, default=3, help="report top-1..top-k (default 3)")
    p.add_argument("--diversity-times", type=int, default=300, help="Diversity pairs (default 300)")
    p.add_argument("--mm-times", type=int, default=10, help="MultiModality pairs (default 10)")
    p.add_argument(
        "--shuffle", action="store_true", help="shuffle pairs (with --seed) before pooling"
    )
    p.add_argument(
        "--replications",
        type=int,
        default=None,
        help="repeat the random parts R times (fresh pairs; fresh pools with --shuffle) and "
        "report mean, t-interval and the protocol's interval; generated samples are NOT redrawn",
    )
    _common.add_seed_flag(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    text = load_array(args.text, what="text embeddings")
    motion = load_array(args.motion, what="motion embeddings")
    gt = load_array(args.gt, what="ground-truth motion embeddings")
    mm = load_array(args.mm, ndim=3, what="MultiModality embeddings") if args.mm else None
    names = {"text": args.text, "motion": args.motion, "gt": args.gt, "mm": args.mm or "mm"}
    if mm is not None and mm.shape[-1] != motion.shape[-1]:
        raise FidevalError(
            f"{args.mm}: d={mm.shape[-1]} but {args.motion} has d={motion.shape[-1]}; "
            "both must come from the same evaluator"
        )

    warned: list[str] = []  # the suite's warnings, each once, in order

    def one(seed: int) -> dict[str, Any]:
        out = motion_suite(
            text,
            motion,
            gt,
            mm,
            pool=args.pool,
            top_k=args.top_k,
            diversity_times=args.diversity_times,
            mm_times=args.mm_times,
            shuffle=args.shuffle,
            seed=seed,
            names=names,
        )
        # Warnings (e.g. N < d for the FID) are text, not a metric to average.
        for w in out.pop("warnings", None) or ():
            if str(w) not in warned:
                warned.append(str(w))
        return out

    if args.replications is None:
        out = one(args.seed)
    else:
        summary = replicate(
            lambda i, rng: one(int(rng.integers(2**63 - 1))),
            args.replications,
            seed=args.seed,
        )
        out = {k: s.to_dict()["mean"] for k, s in summary.items()}
        out["replications"] = {k: s.to_dict() for k, s in summary.items()}
    out["pool"] = args.pool
    out["seed"] = args.seed
    out["warnings"] = warned
    if args.json:
        _common.print_json(out)
    else:
        _print(out)
    _common.warn_all(warned)
    return 0


def _print(out: dict[str, Any]) -> None:
    reps = out.get("replications")
    for key in ("r_precision", "matching_score", "fid", "diversity", "multimodality"):
        if key not in out:
            continue
        val = np.atleast_1d(np.asarray(out[key], dtype=float))
        line = f"{key:>15}: " + " ".join(f"{v:.4f}" for v in val)
        if reps:
            r = reps[key]
            half = np.atleast_1d(np.asarray(r["ci_halfwidth"], dtype=float))
            proto = np.atleast_1d(np.asarray(r["protocol_ci95_halfwidth"], dtype=float))
            line += "  ±" + " ".join(f"{h:.4f}" for h in half) + " (t 95%)"
            line += "  [protocol 1.96σ/√R: " + " ".join(f"{h:.4f}" for h in proto) + "]"
        print(line)
