"""``fideval adm REF.npz SAMPLE.npz``: the ADM evaluator's IS, FID, sFID, precision, recall."""

from __future__ import annotations

import argparse

from ..metrics.adm import MANIFOLD_PROFILES, adm_suite
from . import _common


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "adm",
        help="the ADM evaluator's suite (IS, FID, sFID, precision, recall) of two .npz batches",
        description="openai/guided-diffusion's evaluations/evaluator.py without TensorFlow: "
        "arr_0 uint8 NHWC images, streamed; TF1 bilinear resize to 299; the FID Inception; "
        "FID on pool_3, sFID on Mixed_6d.branch1x1[:7] flattened channels-last, IS from "
        "bias-free logits in splits of 5000, k=3 precision/recall against the reference's "
        "arr_0. A file's stored mu/sigma/mu_s/sigma_s are used when present (ADM's rule).",
    )
    p.add_argument("ref", metavar="REF.npz", help="reference batch (arr_0 and/or mu, sigma, …)")
    p.add_argument("sample", metavar="SAMPLE.npz", help="sample batch (arr_0: uint8 N×H×W×3)")
    p.add_argument("--weights", default=None, help="FID Inception weights file (pytorch-fid's)")
    p.add_argument(
        "--manifold",
        choices=MANIFOLD_PROFILES,
        default="adm",
        help="precision/recall distances: 'adm' (float16, as ADM; default) or 'exact' (float64)",
    )
    p.add_argument(
        "--save-stats",
        metavar="OUT.npz",
        default=None,
        help="write the sample's mu, sigma, mu_s, sigma_s (ADM's layout)",
    )
    p.add_argument(
        "--batch-size", type=_common.positive_int, default=64, help="images per batch (default 64)"
    )
    p.add_argument(
        "--device",
        type=_common.device_type,
        default=None,
        help="torch device (default: cuda if available)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.save_stats is not None:
        _common.check_stats_output(args.save_stats)
    res = adm_suite(
        args.ref,
        args.sample,
        weights=args.weights,
        device=args.device,
        batch_size=args.batch_size,
        manifold=args.manifold,
        save_stats=args.save_stats,
        progress=not args.no_progress,
    )
    if args.json:
        _common.print_json(res)
    else:
        print(f"Inception Score: {res['inception_score']:.8g}")
        print(f"FID: {res['fid']:.8g}")
        print(f"sFID: {res['sfid']:.8g}")
        for name, key in (("Precision", "precision"), ("Recall", "recall")):
            value = res[key]
            print(f"{name}: {'n/a' if value is None else f'{value:.8g}'}")
    _common.warn_all(res["warnings"])
    return 0
