"""Helpers shared by subcommands: flags, JSON printing, one-line messages, early checks.

Messages: every warning the CLI shows is one line ``fideval: warning: <message>`` on
stderr (:func:`show_warning` is installed as :func:`warnings.showwarning` while a
subcommand runs; :func:`warn` prints a result's own warnings the same way).

Early checks (:func:`check_stats_output`, :func:`check_image_inputs`,
:func:`build_extractor`): whatever can be known to fail is checked before any image is
read — the output path, empty folders, the weights file — so a mistake costs a second,
not the hours of an extraction.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from ..errors import FidevalError

WARNING_PREFIX = "fideval: warning: "


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def error_line(exc: BaseException) -> str:
    """An error as one line.

    When the message quotes its cause's multi-line text (a library's paragraph of
    advice, as torch gives for an unreadable file), only the cause's first line is
    kept; then all whitespace is collapsed.
    """
    text = str(exc)
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None:
        inner = str(cause)
        if "\n" in inner.strip() and inner in text:
            first = next((ln for ln in inner.splitlines() if ln.strip()), "")
            text = text.replace(inner, first.strip())
    return one_line(text)


def warn(message: object, file: TextIO | None = None) -> None:
    """Print one warning as the single line ``fideval: warning: <message>`` (stderr)."""
    print(WARNING_PREFIX + one_line(message), file=file or sys.stderr)


def warn_all(messages: Iterable[object]) -> None:
    """:func:`warn` each message (a FrechetResult's or an estimate's ``warnings``)."""
    for m in messages:
        warn(m)


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A :func:`warnings.showwarning` replacement: one plain line, no source path or code.

    Python's default shows ``file.py:123: UserWarning: ...`` and the source line, which
    tells a CLI user nothing; the library keeps raising ordinary warnings.
    """
    try:
        warn(message, file)
    except (OSError, ValueError):  # stderr closed: a warning must never end the run
        pass


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
        "--extractor",
        default="inception",
        metavar="NAME",
        help="feature extractor: inception (default, FID), dinov2-vitl14 (FD_DINOv2), "
        "dinov2-vitb14, clip-vitl14-336 (CMMD), digits",
    )
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
    g.add_argument(
        "--weights",
        default=None,
        help="the extractor's weights file (default: looked up in the caches, downloaded "
        "when online)",
    )
    g.add_argument(
        "--profile",
        default=None,
        help="preprocessing profile (default: the extractor's protocol; inception: "
        "pytorch-fid or clean; dinov2: edm2 or dgm-eval)",
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
        "extractor": getattr(args, "extractor", "inception"),
        "skip_bad": args.skip_bad,
        "progress": not args.no_progress,
    }


def report_fid(result: Any, args: argparse.Namespace, **extra: Any) -> None:
    """Print a FrechetResult: the number (or one JSON object with --json) on stdout.

    Its warnings go to stderr as ``fideval: warning:`` lines in both modes (and stay in
    the JSON's ``warnings`` list).
    """
    if getattr(args, "json", False):
        print_json({**result.to_dict(), **extra})
    else:
        print(f"FID: {result.value:.6f}")
    warn_all(result.warnings)


# --------------------------------------------------------------------------- early checks


def check_stats_output(path: str) -> Path:
    """Check an output statistics path before the work: ``.npz``, in a writable folder.

    The folder may not exist yet if it can be created (nothing is created here).
    """
    from ..io.atomic import check_writable

    target = Path(path)
    if target.suffix != ".npz":
        raise FidevalError(
            f"{path}: statistics files must end in .npz (pytorch-fid and fideval read "
            f"only .npz); e.g. {target.with_suffix('.npz') if target.name else 'out.npz'}"
        )
    return check_writable(target)


def check_output_folder(path: str) -> Path:
    """Check that ``path`` is a folder, or can be created, and files can be written in it."""
    from ..io.atomic import check_writable

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise FidevalError(f"{path}: exists and is not a folder; expected an output folder")
    check_writable(folder / "probe")
    return folder


def check_image_inputs(*paths: str) -> None:
    """Refuse an image folder without a single image file, before any network is loaded.

    Uses the image stage's own rule (extensions, hidden files skipped), and stops at the
    first image found, so a full folder costs almost nothing.
    """
    from ..data.images import IMAGE_EXTENSIONS

    for path in paths:
        root = Path(path)
        if not root.is_dir():
            continue
        found = any(
            p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
            for p in root.rglob("*")
        )
        if not found:
            exts = ", ".join(sorted(e[1:] for e in IMAGE_EXTENSIONS))
            raise FidevalError(f"no image files in folder {path} (searched recursively for {exts})")


def build_extractor(args: argparse.Namespace) -> Any:
    """The extractor of the image flags (``--extractor``), built once, before any image is read.

    Building it resolves and loads the weights, so a missing or unreadable ``--weights``
    file is reported before the extraction starts. Any error is one line naming the
    weights file (the loader's own message, without a library's multi-line text).
    """
    from ..features.extract import make_extractor

    try:
        return make_extractor(
            dims=args.dims,
            weights=args.weights,
            device=args.device,
            profile=args.profile,
            extractor=getattr(args, "extractor", "inception"),
        )
    except FidevalError as exc:
        if "\n" not in str(exc):
            raise
        raise FidevalError(error_line(exc)) from exc


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
    """The two sample sets (features, or images through the FID Inception) of a metric.

    Checked before any image is read: both paths' kinds (a statistics file, which these
    metrics cannot use, fails at once), empty image folders and the weights. The network
    is built once for both sides.
    """
    from ..pipeline import features_from_path, path_kind

    kinds = [path_kind(a), path_kind(b)]
    options = image_options(args)
    if "images" in kinds:
        check_image_inputs(*(p for p, k in zip((a, b), kinds, strict=True) if k == "images"))
    # Cheap sides first: a statistics file is refused and a features file memory-mapped
    # before the other side's images are extracted.
    order = sorted(range(2), key=lambda i: kinds[i] == "images")
    out: list[Any] = [None, None]
    extractor = None
    for i in order:
        if kinds[i] == "images" and extractor is None:
            extractor = build_extractor(args)
        out[i] = features_from_path((a, b)[i], **{**options, "extractor": extractor})
    return out[0], out[1]
