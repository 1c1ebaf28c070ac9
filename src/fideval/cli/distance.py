"""``fideval distance A B``: the Fréchet distance between two statistics or feature files."""

from __future__ import annotations

import argparse

from . import _common
from .fid import run


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distance",
        help="Fréchet distance between two statistics (.npz) or 2-D feature (.npy) files",
        description="Each of A and B is a statistics file (fideval, pytorch-fid, clean-fid, "
        "guided-diffusion or denoising-diffusion-pytorch) or a 2-D features file. With two "
        "feature files the exact features route is used at any N. (`fideval fid` also takes "
        "images.)",
    )
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    _common.add_force_flag(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)
