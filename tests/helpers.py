"""Shared test material: images, folders, features, random weights, CLI runs.

One place for what many test modules need, so each builds its inputs the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fideval.cli import main


def images(n: int, size: tuple[int, int] = (8, 8), seed: int = 0) -> np.ndarray:
    """(n, H, W, 3) uint8 random images."""
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def image_folder(root: Path, n: int, size: tuple[int, int] = (8, 8), seed: int = 0) -> Path:
    """A folder of ``n`` PNG files ``000.png`` … with random pixels."""
    root.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images(n, size, seed)):
        Image.fromarray(img).save(root / f"{i:03d}.png")
    return root


def features(n: int, d: int, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    """(n, d) float64 standard normal features, shifted."""
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def inception_weights(path: Path, seed: int = 0) -> Path:
    """A random, well-scaled FID Inception weights file (the real one cannot be fetched)."""
    from fideval.features.inception import seeded_random_state_dict

    if not path.exists():
        torch.save(seeded_random_state_dict(seed), path)
    return path


def cli(capsys, *argv: object) -> tuple[int, str, str]:
    """Run ``fideval ARGV`` in process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str, command: str) -> str:
    """The single ``fideval COMMAND: error: …`` line of ``err`` (no traceback)."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fideval {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]
