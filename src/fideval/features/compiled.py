"""``torch.compile`` for the extractors' networks, where it pays, with a clean fallback.

``compile="auto"`` (the default of :func:`fideval.extractor` and ``--compile``) compiles
only when a job is large enough for the compile time to pay back: the stream tells the
extractor how many images it will see (:meth:`CompiledNet.prepare`). ``True`` compiles on
the first batch; ``False`` never. On the CPU the network is compiled with inductor's
*freezing* (weights folded as constants, convolutions pre-packed for oneDNN); on CUDA
with inductor's defaults. CUDA graphs (``mode="reduce-overhead"``) are not used: a replay
reuses its output buffers, so a consumer that keeps a batch's features (a feature bank)
would see them overwritten by the next batch. Compiled code is cached between runs under
``$TORCHINDUCTOR_CACHE_DIR`` (default: ``<fideval cache>/inductor``), so a second run
compiles in a fraction of the first's time.

If compiling or running the compiled network fails (no C compiler, an unsupported
platform), one warning line says so and the eager network is used from then on:
features never depend on whether compilation worked, beyond float32 round-off
(tested: ≤ 64 ulps of the largest feature).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import nn

#: Images from which ``compile="auto"`` compiles: break-even of about 30 s of compile
#: time against ≈ 0.02 s saved per 299×299 Inception image on a 2-core CPU
#: (benchmarks/bench_inception.py), with margin; on CUDA the saving per image is smaller.
AUTO_MIN_IMAGES = {"cpu": 5_000, "cuda": 20_000}

COMPILE_CHOICES = ("auto", True, False)


def parse_compile(value: Any) -> str | bool:
    """``"auto"``, ``True`` or ``False`` (also ``"on"`` / ``"off"`` from the CLI)."""
    table = {"auto": "auto", "on": True, "off": False, True: True, False: False}
    if isinstance(value, str | bool) and value in table:
        return table[value]
    from ..errors import FidevalError

    raise FidevalError(f"compile must be 'auto', True or False (on / off), got {value!r}")


def _cache_dir() -> None:
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        from ..io.weights import cache_home

        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_home() / "fideval" / "inductor")


class CompiledNet:
    """The eager network and, once compiled, its compiled twin; calls go to the compiled
    one when it works, else to the eager one (after one warning)."""

    def __init__(self, net: nn.Module, mode: Any = "auto") -> None:
        self.eager = net
        self.mode = parse_compile(mode)
        self.compiled: Any = None
        self.failed = False

    def prepare(self, n_images: int | None, device: torch.device) -> None:
        """Compile now if the mode asks for it and a job of ``n_images`` pays for it."""
        if self.compiled is not None or self.failed or self.mode is False:
            return
        if self.mode == "auto":
            need = AUTO_MIN_IMAGES.get(device.type)
            if need is None or n_images is None or n_images < need:
                return
        self._compile(device)

    def _compile(self, device: torch.device) -> None:
        _cache_dir()
        options = {"freezing": True} if device.type == "cpu" else {}
        try:
            self.compiled = torch.compile(self.eager, dynamic=False, options=options)
        except Exception as exc:  # torch.compile itself is lazy; this is rare
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self.failed, self.compiled = True, None
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        warnings.warn(
            f"torch.compile is not available here ({type(exc).__name__}: {reason}); "
            "the network runs uncompiled (same features)",
            RuntimeWarning,
            stacklevel=3,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.mode is True and self.compiled is None and not self.failed:
            p = next(self.eager.parameters(), None)
            self._compile(p.device if p is not None else torch.device("cpu"))
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # no compiler, unsupported op: fall back, once
                self._fail(exc)
        return self.eager(*args, **kwargs)
