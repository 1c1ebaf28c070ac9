"""``fideval estimate FEATURES REF``: bias-corrected FID, FID∞, FID at target N, intervals.

FEATURES is a 2-D (N, d) features file read in order as one stream (kept as K group
statistics); REF is a statistics file. With ``--tolerance`` the file is read batch by
batch as if from a sampler, stopping once the chosen estimate's 95% half-width is
≤ tolerance.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np
import torch

from .._arrays import check_finite_rows
from ..data.features import iter_feature_chunks
from ..errors import FidevalError
from ..estimate import ESTIMATES, AdaptiveEstimator, FidEstimate, estimate_fid
from ..frechet import FrechetReference
from ..pipeline import check_dims
from ..stats import GroupedStats
from ..streaming import resolve_source
from . import _common


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "estimate",
        help="bias-corrected FID, FID∞ and the expected FID at a target N, with 95%% intervals",
        description="Estimate from one stream of generated features (FEATURES, a 2-D .npy "
        "read in order) against reference statistics (REF, .npz): plain FID at N, a "
        "bias-corrected FID∞, Chong & Forsyth's FID∞ and the FID the standard protocol at "
        "--target-n would give in expectation, each with a 95%% interval.",
    )
    p.add_argument("features", metavar="FEATURES", help="2-D (N, d) features file (.npy)")
    p.add_argument("ref", metavar="REF", help="reference statistics file (.npz)")
    p.add_argument("--target-n", type=int, default=50_000, help="target N (default 50000)")
    p.add_argument("--groups", type=int, default=10, help="groups K of the stream (default 10)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="stop once the 95%% half-width of --estimate is ≤ this (FID units)",
    )
    p.add_argument(
        "--estimate",
        choices=ESTIMATES,
        default="fid_at_target",
        help="the value --tolerance applies to (default fid_at_target)",
    )
    p.add_argument("--max-samples", type=int, default=None, help="use at most N samples")
    p.add_argument("--min-samples", type=int, default=None, help="no adaptive check before N")
    p.add_argument(
        "--batch-size", type=_common.positive_int, default=500, help="rows per batch (default 500)"
    )
    p.add_argument("--orders", type=int, default=3, help="random group orders (default 3)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common.add_seed_flag(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def _checked_chunks(feats: np.ndarray, name: str, rows: int) -> Iterator[np.ndarray]:
    """Row chunks, each checked for NaN/Inf naming the file and the rows."""
    starts = range(0, feats.shape[0], rows)
    for lo, chunk in zip(starts, iter_feature_chunks(feats, rows), strict=True):
        check_finite_rows(torch.from_numpy(np.array(chunk)), name, row_offset=lo or None)
        yield chunk


def run(args: argparse.Namespace) -> int:
    ref_src, feat_src = resolve_source(args.ref), resolve_source(args.features)
    if ref_src.kind != "stats":
        raise FidevalError(f"{ref_src.name}: expected reference statistics (a .npz with mu, sigma)")
    if feat_src.kind != "features":
        raise FidevalError(f"{feat_src.name}: expected 2-D generated features (N, d)")
    record = ref_src.value
    check_dims(feat_src.name, int(feat_src.dim), None, ref_src.name, record.dim, record.meta)
    try:
        reference = FrechetReference(record.mu, record.sigma, n=record.n)
    except FidevalError as exc:
        raise type(exc)(f"{ref_src.name}: {exc}") from exc
    feats = feat_src.value
    total = feats.shape[0]
    limit = total if args.max_samples is None else min(total, args.max_samples)
    chunks = _checked_chunks(feats[:limit], feat_src.name, args.batch_size)
    if args.tolerance is not None:
        est = AdaptiveEstimator(
            reference,
            args.tolerance,
            estimate=args.estimate,
            groups=args.groups,
            min_samples=min(2000 if args.min_samples is None else args.min_samples, limit),
            max_samples=limit,
            target_n=args.target_n,
            batch_size=args.batch_size,
            progress=not args.no_progress and not args.json,
            seed=args.seed,
            orders=args.orders,
        )
        for chunk in chunks:
            if est.update(chunk):
                break
        reason = "max_samples reached" if limit < total else "stream exhausted"
        result = est.estimate() if est.done else est.finish(reason)
        if result.stopped_because == "max_samples reached" and limit == total:
            result.stopped_because = "stream exhausted"
    else:
        grouped = GroupedStats(args.groups)
        for chunk in chunks:
            grouped.update(chunk)
        result = estimate_fid(
            grouped, reference, target_n=args.target_n, orders=args.orders, seed=args.seed
        )
        result.stopped_because = "max_samples reached" if limit < total else "stream end"
    report(result, args)
    return 0


def report(result: FidEstimate, args: argparse.Namespace) -> None:
    """The table (or one JSON object with --json); warnings as one line each on stderr."""
    if args.json:
        _common.print_json(result.to_dict())
        _common.warn_all(result.warnings)
        return
    m = "unknown" if result.m is None else str(result.m)
    print(f"N = {result.n} generated samples ({result.groups} groups), M = {m} reference")
    print(f"{'estimate':<22}{'value':>12}  {'95% interval':<26}")
    rows = (
        ("FID at N", "fid"),
        ("bias-corrected FID∞", "fid_bias_corrected"),
        ("FID∞ (Chong-Forsyth)", "fid_infinity"),
        (f"FID at N={result.target_n}", "fid_at_target"),
    )
    for label, name in rows:
        lo, hi = result.ci(name)
        print(f"{label:<22}{result.value(name):>12.4f}  [{lo:.4f}, {hi:.4f}]")
    print(f"samples used: {result.n_used} ({result.stopped_because})")
    print(f"method: {result.method}")
    _common.warn_all(result.warnings)
