"""The ``fideval`` command line: parse, call the library, print.

Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers)``, which registers the subcommand and sets
``func(args) -> int`` as its default. Modules are discovered by name, so adding
a subcommand is adding a file. No logic lives here: user errors
(:class:`~fideval.errors.FidevalError`) become one line on stderr and exit
status 2, and every warning shown while a subcommand runs is one line
``fideval: warning: <message>`` (the library itself raises ordinary warnings).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings
from collections.abc import Sequence

from .._version import __version__
from ..errors import FidevalError
from ._common import error_line, one_line, os_error_line, show_warning

EXIT_USER_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors as one line (``fideval fid: error: …``, exit 2): no usage
    block, control characters escaped."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from .._text import shown

        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {one_line(shown(message))}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="fideval",
        description="Fréchet Inception Distance and companion metrics: fast, robust, honest.",
    )
    parser.add_argument("--version", action="version", version=f"fideval {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns its exit status (2 for a user error, 130 on Ctrl-C).

    While it runs, :func:`warnings.showwarning` prints one plain line per warning; the
    previous hook (and the warning filters) are restored on return, so calling
    ``main`` from Python or from tests leaves the process as it was.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        from ..distributed import shutdown

        ok = False
        try:
            code = _run(args)
            ok = code == 0
            return code
        finally:
            # A process group the subcommand started under torchrun.
            _RAN_DISTRIBUTED[0] = shutdown(wait=ok) or _RAN_DISTRIBUTED[0]


_RAN_DISTRIBUTED = [False]


def console_main() -> None:
    """The ``fideval`` command (and ``python -m fideval``): :func:`main`, then exit.

    After a torchrun run, the process leaves with ``os._exit``: the interpreter's own
    teardown can destroy a torch.distributed background thread while it is joinable
    and abort the rank ("terminate called without an active exception", seen on about
    one run in eight here), after all the work was done and written.
    """
    code = main()
    if _RAN_DISTRIBUTED[0]:
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except FidevalError as exc:
        print(f"fideval {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # e.g. `fideval fid A B --json | head`: the reader left
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a full disk, a read-only folder, a name too long: one line
        print(f"fideval {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"fideval {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
