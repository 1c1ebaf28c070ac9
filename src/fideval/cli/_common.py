"""Helpers shared by subcommands: flags, JSON printing, one-line messages, early checks.

Messages: every warning the CLI shows is one line ``fideval: warning: <message>`` on
stderr (:func:`show_warning` is installed as :func:`warnings.showwarning` while a
subcommand runs; :func:`warn` prints a result's own warnings the same way).

Early checks (:func:`check_stats_output`, :func:`check_image_inputs`, the extractor
built before any image is read): whatever can be known to fail is checked before any image is
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


def os_error_line(exc: OSError) -> str:
    """An OS error on a path as one line: ``<path>: <reason> (errno NAME)``.

    The path is the innermost one named in the chain of causes (the file the OS refused),
    escaped; the reason is the OS's own words, never a traceback.
    """
    import errno as errno_mod

    from .._text import shown

    inner: BaseException | None = exc
    found: OSError = exc
    while inner is not None:
        if isinstance(inner, OSError) and (inner.filename is not None or inner.errno):
            found = inner
        inner = inner.__cause__ or inner.__context__
    reason = found.strerror or str(found) or type(found).__name__
    code = errno_mod.errorcode.get(found.errno or 0)
    where = shown(found.filename) + ": " if found.filename is not None else ""
    return one_line(f"{where}{reason}" + (f" ({code})" if code else ""))


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


def _int_at_least(minimum: int) -> Any:
    """An argparse type: a whole number ≥ ``minimum``, with one message."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            shown = repr(text) if value is None else value
            raise argparse.ArgumentTypeError(
                f"expected a whole number ≥ {minimum}, got {shown}"
            ) from None
        return value

    return parse


#: argparse types: an integer ≥ 1, an integer ≥ 0.
positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


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


def _registry_help(default: str) -> str:
    from ..features.registry import registered

    entries = "; ".join(f"{s.name}: {s.protocol}, {s.dims}-d" for s in registered())
    return f"feature extractor (default {default}). {entries}"


def _option_help(option: str, what: str) -> str:
    """Which registered extractors take ``option``, with their allowed values."""
    from ..features.registry import registered

    parts = []
    for s in registered():
        if option in s.options:
            allowed = s.choices(option)
            parts.append(s.name + (f" ({', '.join(map(str, allowed))})" if allowed else ""))
    return f"{what}; taken by {', '.join(parts)} (default: the extractor's own)"


def add_image_flags(
    parser: argparse.ArgumentParser, *, device: bool = True, default_extractor: str = "inception"
) -> None:
    """Flags for image inputs, named like pytorch-fid's where they exist; the choices and
    help of ``--extractor``, ``--dims`` and ``--profile`` come from the registry.

    ``device=False`` when the subcommand already has its own ``--device`` (then the
    network runs there too).
    """
    g = parser.add_argument_group("image inputs")
    g.add_argument(
        "--extractor",
        default=default_extractor,
        metavar="NAME",
        help=_registry_help(default_extractor),
    )
    g.add_argument(
        "--batch-size", type=positive_int, default=50, help="images per batch (default 50)"
    )
    if device:
        add_device_flag(g)
    g.add_argument("--dims", type=int, default=None, help=_option_help("dims", "feature dimension"))
    g.add_argument(
        "--num-workers",
        type=non_negative_int,
        default=None,
        help="DataLoader worker processes for decoding (default: min(8, cores - 1))",
    )
    g.add_argument(
        "--weights",
        default=None,
        help=_option_help(
            "weights",
            "the extractor's weights file (default: looked up in the "
            "caches, downloaded when online)",
        ),
    )
    g.add_argument("--profile", default=None, help=_option_help("profile", "preprocessing profile"))
    g.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unreadable images and images whose size does not fit the batch (reported) "
        "instead of stopping",
    )
    g.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="torch.compile the network: auto (default) only when the job is large enough "
        "for the compile time to pay, on, or off; falls back to eager with one warning",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_device_flag(parser: Any) -> None:
    """``--device``: the same default in every subcommand (CUDA when available)."""
    parser.add_argument(
        "--device",
        type=device_type,
        default=None,
        help="torch device (default: cuda if available, else cpu)",
    )


def stream_options(args: argparse.Namespace) -> dict[str, Any]:
    """The flags of :func:`fideval.streaming.stream`."""
    return {
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "skip_bad": args.skip_bad,
        "progress": not args.no_progress,
    }


def lazy_extractor(args: argparse.Namespace, **extra: Any) -> Any:
    """The extractor of the flags, built by :func:`fideval.extractor` on first use.

    Only the options given on the command line are passed, so an option the extractor
    does not take (``--dims`` with CLIP) is an error naming it. A multi-line loader
    message becomes one line.
    """
    from ..features.registry import extractor
    from ..streaming import Lazy

    options = {
        "weights": args.weights,
        "device": getattr(args, "device", None),
        "dims": args.dims,
        "profile": args.profile,
        "compile": {"auto": "auto", "on": True, "off": False}[getattr(args, "compile", "auto")],
        **extra,
    }

    def build() -> Any:
        try:
            return extractor(args.extractor, **options)
        except FidevalError as exc:
            if "\n" not in str(exc):
                raise
            raise FidevalError(error_line(exc)) from exc

    return Lazy(build)


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


def add_force_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="compare even when the provenance (extractor, weights, dims, profile) differs",
    )


def add_sample_metric_flags(
    parser: argparse.ArgumentParser, default_extractor: str = "inception"
) -> None:
    """Flags of the metrics computed from samples (KID, PRDC, CMMD): compute, images,
    seed, JSON."""
    from ._arrays import add_compute_flags

    add_compute_flags(parser)
    add_image_flags(parser, device=False, default_extractor=default_extractor)
    add_seed_flag(parser)
    add_json_flag(parser)


def sample_pair(args: argparse.Namespace, a: str, b: str) -> tuple[Any, Any]:
    """The two sample sets (features, or images through the extractor) of a metric.

    Both paths are resolved once, first: a statistics file, which these metrics cannot
    use, fails before any image is read. The network is built once, for the image
    sides only.
    """
    from ..streaming import collect, needs_samples, resolve_source

    sources = [resolve_source(p) for p in (a, b)]
    for src in sources:
        if src.kind == "stats":
            raise needs_samples(src.name)
    lazy = lazy_extractor(args)
    options = stream_options(args)
    # Cheap sides first: a features file is memory-mapped before images are extracted.
    order = sorted(range(2), key=lambda i: sources[i].kind == "images")
    out: list[Any] = [None, None]
    for i in order:
        out[i] = collect(sources[i], lazy, features="required", **options).features
    return out[0], out[1]
