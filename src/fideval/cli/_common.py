"""Helpers shared by subcommands: JSON printing and common flags."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {value}")
    return value


def device_type(text: str) -> str:
    """argparse type: a torch device that exists here (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"{text!r}: only {torch.cuda.device_count()} CUDA device(s) here"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available on this machine")
    return text


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_seed_flag(parser: argparse.ArgumentParser, default: int = 0) -> None:
    parser.add_argument(
        "--seed", type=int, default=default, help=f"random seed (default {default})"
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _jsonable(value.item())
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return value


def print_json(obj: dict[str, Any]) -> None:
    """Print ``obj`` as one JSON object (NaN/Inf become null, arrays become lists)."""
    json.dump(_jsonable(obj), sys.stdout, sort_keys=False)
    sys.stdout.write("\n")


def add_image_flags(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """Flags for image inputs, named like pytorch-fid's where they exist.

    ``device=False`` when the subcommand already has its own ``--device`` (then the
    network runs there too).
    """
    g = parser.add_argument_group("image inputs")
    g.add_argument(
        "--batch-size", type=positive_int, default=50, help="images per batch (default 50)"
    )
    if device:
        g.add_argument(
            "--device",
            type=device_type,
            default=None,
            help="torch device (default: cuda if available)",
        )
    g.add_argument(
        "--dims",
        type=int,
        default=2048,
        choices=(64, 192, 768, 2048),
        help="Inception feature dimension (default 2048)",
    )
    g.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="DataLoader worker processes for decoding (default: min(8, cores))",
    )
    g.add_argument("--weights", default=None, help="Inception weights file (pytorch-fid format)")
    g.add_argument(
        "--profile",
        default="pytorch-fid",
        choices=("pytorch-fid", "clean"),
        help="preprocessing profile (default pytorch-fid)",
    )
    g.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unreadable images (reported) instead of stopping",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def image_options(args: argparse.Namespace) -> dict[str, Any]:
    """The image flags as keyword arguments for the image stage."""
    return {
        "batch_size": args.batch_size,
        "device": args.device,
        "dims": args.dims,
        "num_workers": args.num_workers,
        "weights": args.weights,
        "profile": args.profile,
        "skip_bad": args.skip_bad,
        "progress": not args.no_progress,
    }


def report_fid(result: Any, args: argparse.Namespace, **extra: Any) -> None:
    """Print a FrechetResult: one JSON object with --json, else the number and warnings."""
    if getattr(args, "json", False):
        print_json({**result.to_dict(), **extra})
        return
    print(f"FID: {result.value:.6f}")
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)


def add_force_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="compare even when the provenance (extractor, weights, dims, profile) differs",
    )


def add_sample_metric_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of the metrics computed from samples (KID, PRDC): compute, images, seed, JSON."""
    from ._arrays import add_compute_flags

    add_compute_flags(parser)
    add_image_flags(parser, device=False)
    add_seed_flag(parser)
    add_json_flag(parser)


def sample_pair(args: argparse.Namespace, a: str, b: str) -> tuple[Any, Any]:
    """The two sample sets (features, or images through the FID Inception) of a metric."""
    from ..pipeline import features_from_path

    options = image_options(args)
    return features_from_path(a, **options), features_from_path(b, **options)
