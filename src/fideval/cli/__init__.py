"""The ``fideval`` command line: parse, call the library, print.

Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers)``, which registers the subcommand and sets
``func(args) -> int`` as its default. Modules are discovered by name, so adding
a subcommand is adding a file. No logic lives here: user errors
(:class:`~fideval.errors.FidevalError`) become one line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import FidevalError

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FidevalError as exc:
        print(f"fideval {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"fideval {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
