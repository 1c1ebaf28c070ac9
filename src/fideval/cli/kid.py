"""``fideval kid A B``: Kernel Inception Distance between two feature files."""

from __future__ import annotations

import argparse

from .._text import shown
from ..metrics.kid import check_kernel, kid
from . import _common
from ._arrays import compute_dtype


def _number(text: str) -> int | float:
    """argparse type: a number as written (``3`` stays an int, ``2.5`` a float).

    The range is checked by :func:`fideval.metrics.kid.check_kernel`, so that an
    invalid kernel is one ``fideval kid: error: …`` line naming the parameter.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    return int(value) if value.is_integer() else value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kid",
        help="Kernel Inception Distance (unbiased MMD², cubic kernel) of two feature files "
        "or image folders / arrays",
        description="Mean unbiased MMD² with k(x,y) = (γ·xᵀy + c)^p (default (xᵀy/d + 1)³) "
        "over S subsets of size M drawn without replacement; kid_std is the ddof=0 spread "
        "of the subset values.",
    )
    p.add_argument("a", metavar="A", help="features (N, d) .npy, image folder or image array")
    p.add_argument("b", metavar="B", help="features (M, d) .npy, image folder or image array")
    p.add_argument("--subsets", type=int, default=100, help="number of subsets S (default 100)")
    p.add_argument("--subset-size", type=int, default=1000, help="rows per subset M (default 1000)")
    p.add_argument(
        "--full",
        action="store_true",
        help="deterministic unbiased MMD² of the full sets (S=1, M=N; chunked)",
    )
    k = p.add_argument_group("kernel (γ·xᵀy + c)^p")
    k.add_argument(
        "--degree",
        type=_number,
        default=3,
        help="polynomial degree p, a whole number ≥ 1 (default 3)",
    )
    k.add_argument("--gamma", type=_number, default=None, help="γ > 0 (default 1/d)")
    k.add_argument("--coef0", type=_number, default=1.0, help="c ≥ 0 (default 1)")
    _common.add_sample_metric_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Check the kernel before any features are read or extracted (one-line error).
    degree, gamma, coef0 = check_kernel(args.degree, args.gamma, args.coef0)
    a, b = _common.sample_pair(args, args.a, args.b)
    res = kid(
        a,
        b,
        subsets=1 if args.full else args.subsets,
        subset_size=None if args.full else args.subset_size,
        seed=args.seed,
        degree=degree,
        gamma=gamma,
        coef0=coef0,
        dtype=compute_dtype(args),
        device=args.device,
        names=(shown(args.a), shown(args.b)),
    )
    out = {**res.to_dict(), "n_a": int(a.shape[0]), "n_b": int(b.shape[0]), "seed": args.seed}
    out["kernel"] = {
        "degree": degree,
        "gamma": 1.0 / int(a.shape[1]) if gamma is None else gamma,
        "coef0": coef0,
    }
    if args.json:
        _common.print_json(out)
    else:
        print(f"KID: {res.value:.6g} ± {res.std:.3g} (std over {res.subsets} subsets, ddof=0)")
    return 0
