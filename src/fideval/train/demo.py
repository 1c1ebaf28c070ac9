"""``fideval demo``: train a small diffusion model on real digits with FID in the loop.

Offline and CPU-only: scikit-learn's 8×8 handwritten digits (1 797 images, shipped with
scikit-learn), the digits CNN feature extractor shipped with fideval (its recipe and
held-out accuracy in ``features/weights/digits_cnn.json``), and fideval's
:class:`~fideval.train.demo_diffusion.TinyDiffusion`. The :class:`FIDEvaluator`
evaluates on a schedule against the cached statistics of all 1 797 real digits, with
common random numbers (``paired=True``: sample i has the same noise at every
evaluation), so each row also says whether the model got better than at the previous
evaluation: the paired difference with its 95% interval. The run writes ``log.jsonl`` (one
object per evaluation) and ``fid.png`` (:func:`fideval.plot.plot_log`, what
``fideval plot log.jsonl`` draws).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import FidevalError
from .evaluator import EvalRecord, FIDEvaluator
from .schedule import EveryNSteps


@dataclass(frozen=True)
class DemoSettings:
    steps: int
    batch_size: int
    evaluations: int
    samples: int
    lr: float = 2e-3


# Measured on the 2-core CPU (1 thread): ~20 ms per training step, ~1.5 s per 1 000 samples.
DEFAULT = DemoSettings(steps=6000, batch_size=128, evaluations=6, samples=1000)
QUICK = DemoSettings(steps=1000, batch_size=128, evaluations=4, samples=500)


def _load_dependencies() -> tuple[Any, Any, Any]:
    try:
        from ..features.digits import DigitsFeatureExtractor, load_digits_images
    except ImportError as exc:  # pragma: no cover
        raise FidevalError(f"the demo needs fideval's digits extractor ({exc})") from exc
    from . import demo_diffusion

    return DigitsFeatureExtractor, load_digits_images, demo_diffusion


def _verdict(r: EvalRecord) -> str:
    c = r.vs_previous
    if not c:
        return ""
    lo, hi = c["ci95"]
    word = "better" if hi < 0 else ("worse" if lo > 0 else "same")
    return f"{c['difference']:+8.3f} ± {0.5 * (hi - lo):5.3f}  {word}"


def format_row(r: EvalRecord) -> str:
    lo, hi = r.fid_ci95
    return (
        f"{r.step:>6d}  {r.fid:9.3f}  [{lo:8.3f}, {hi:8.3f}]  {r.n:>7d}  {r.seconds:7.1f}  "
        f"{_verdict(r)}"
    ).rstrip()


HEADER = (
    f"{'step':>6s}  {'FID':>9s}  {'95% interval':^20s}  {'samples':>7s}  {'seconds':>7s}  "
    f"vs previous (paired)"
)


def plot_trajectory(records: list[EvalRecord], path: Path) -> bool:
    """FID against step (:func:`fideval.plot.plot_log`); False when matplotlib is missing."""
    from ..plot import plot_log

    try:
        plot_log(
            [r.to_dict() for r in records],
            path,
            title="fideval demo: TinyDiffusion (EMA) on sklearn digits",
            ylabel="FID (digits CNN features)",
        )
    except FidevalError:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return False
        raise
    return True


def run_demo(
    out: str | os.PathLike[str] = "fideval-demo",
    *,
    steps: int | None = None,
    quick: bool = False,
    seed: int = 0,
    echo: Callable[[str], None] = print,
    threads: int | None = 1,
) -> list[EvalRecord]:
    """Train TinyDiffusion on the digits with in-loop FID; returns the evaluation records."""
    settings = QUICK if quick else DEFAULT
    total = settings.steps if steps is None else int(steps)
    if total < settings.evaluations:
        raise FidevalError(f"--steps must be ≥ {settings.evaluations}, got {total}")
    if threads:
        # A 0.5M-parameter model: threading overhead dominates (2 threads: ~20x slower here).
        torch.set_num_threads(threads)
    extractor_cls, load_images, diffusion = _load_dependencies()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "log.jsonl"
    if log_path.exists():
        log_path.unlink()

    torch.manual_seed(seed)
    real = load_images()  # (1797, 1, 8, 8) in [0, 1]
    extractor = extractor_cls()
    model = diffusion.TinyDiffusion()
    ema = diffusion.EMA(model, 0.999)
    opt = diffusion.make_optimizer(model, lr=settings.lr)
    every = max(1, total // settings.evaluations)
    evaluator = FIDEvaluator(
        model,
        real,
        extractor,
        ema=ema.model,
        schedule=EveryNSteps(every, n=settings.samples, start=0),
        batch_size=500,
        seed=seed,
        groups=10,
        paired=True,
        log_path=log_path,
        cache_dir=out_dir / "cache",
        callbacks=[lambda r: echo(format_row(r))],
        # Per-evaluation lines are the table rows (callback); other messages as comments.
        log=lambda msg: None if msg.startswith("step ") else echo(f"# {msg}"),
    )
    echo(
        f"# training TinyDiffusion on {real.shape[0]} sklearn digits for {total} steps "
        f"(batch {settings.batch_size}); FID every {every} steps from {settings.samples} "
        f"samples vs the {real.shape[0]} real digits, digits-CNN features (d={extractor.dims})"
    )
    _ = evaluator.reference
    echo(HEADER)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    evaluator.step(0)  # the untrained model, for scale
    for step in range(1, total + 1):
        idx = torch.randint(0, real.shape[0], (settings.batch_size,), generator=gen)
        diffusion.train_step(model, opt, real[idx], ema=ema)
        evaluator.step(step)
    wall = time.perf_counter() - t0
    records = evaluator.records
    plotted = plot_trajectory(records, out_dir / "fid.png")
    frac = evaluator.eval_seconds / max(wall, 1e-9)
    echo(
        f"# done in {wall:.0f} s; evaluation took {evaluator.eval_seconds:.0f} s "
        f"({frac:.0%} of the run)"
    )
    echo(
        f"# wrote {log_path}"
        + (f" and {out_dir / 'fid.png'}" if plotted else " (install matplotlib for fid.png)")
    )
    return records


def main_echo(msg: str) -> None:
    print(msg, flush=True, file=sys.stdout)
