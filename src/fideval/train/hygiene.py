"""Model hygiene during evaluation: eval mode restored afterwards, training RNG untouched.

:func:`evaluation_mode` puts every given module (and all its submodules) in eval mode and
restores each submodule's own ``training`` flag afterwards — not a blanket ``.train()``,
which would wrongly switch on frozen parts. :func:`isolated_rng` saves the Python,
NumPy and torch (CPU and every CUDA device) generators, seeds them with the evaluation's
explicit seed, and restores the training loop's state on exit, so evaluating never
changes what the training loop draws next.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


@contextlib.contextmanager
def evaluation_mode(*objects: Any) -> Iterator[None]:
    """Eval mode for every ``nn.Module`` among ``objects``; each flag restored on exit."""
    saved: list[tuple[torch.nn.Module, bool]] = []
    for obj in objects:
        if isinstance(obj, torch.nn.Module):
            saved.extend((m, m.training) for m in obj.modules())
    try:
        for obj in objects:
            if isinstance(obj, torch.nn.Module):
                obj.eval()
        yield
    finally:
        for module, flag in saved:
            module.training = flag


@contextlib.contextmanager
def isolated_rng(seed: int | None) -> Iterator[None]:
    """Run the block with its own seeded RNG streams; restore the caller's afterwards."""
    py_state = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002 - the global stream training uses
    # Every CUDA device's generator is saved too: torch.manual_seed below seeds them all.
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices, enabled=True):
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed % 2**32)  # noqa: NPY002
            torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002
