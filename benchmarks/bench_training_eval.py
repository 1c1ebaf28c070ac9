"""Training-time evaluation cost: fideval's Evaluator (10% budget) vs the DDPM protocol.

Trains fideval's TinyDiffusion on sklearn's digits twice with the same seed — the
Evaluator never touches the training RNG, so both runs train the identical model — and
evaluates FID (digits-CNN features) in the loop:

(a) ``FIDEvaluator`` with ``WallClockBudget(fraction=0.10)``: as many samples as 10% of the
    training time buys, bias-corrected prediction of the 50k-sample FID with its interval;
(b) denoising-diffusion-pytorch's protocol: plain FID from a fixed ``--full-n`` samples
    (50 000 by default) every ``--every`` steps.

Prints evaluation time as a fraction of training time for each, and the two FID
trajectories side by side.

    python benchmarks/bench_training_eval.py [--steps 6000] [--every 1000] [--full-n 50000]
"""

from __future__ import annotations

import argparse
import time

import torch

from fideval.features.digits import DigitsFeatureExtractor, load_digits_images
from fideval.train import EveryNSteps, FIDEvaluator, WallClockBudget
from fideval.train import demo_diffusion as dd


def train(steps: int, evaluator_factory, seed: int = 0):
    torch.manual_seed(seed)
    real = load_digits_images()
    model = dd.TinyDiffusion()
    ema = dd.EMA(model, 0.999)
    opt = dd.make_optimizer(model, lr=2e-3)
    ev = evaluator_factory(model, ema, real)
    _ = ev.reference
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(0, real.shape[0], (128,), generator=gen)
        dd.train_step(model, opt, real[idx], ema=ema)
        ev.step(step)
    wall = time.perf_counter() - t0
    return ev, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--full-n", type=int, default=50_000)
    ap.add_argument("--fraction", type=float, default=0.10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    quiet = lambda msg: None  # noqa: E731

    def budget(model, ema, real):
        return FIDEvaluator(
            model,
            real,
            DigitsFeatureExtractor(),
            ema=ema.model,
            schedule=WallClockBudget(
                args.fraction, min_samples=1000, max_samples=20_000, min_interval=250
            ),
            batch_size=500,
            cache_dir="",
            log=quiet,
        )

    def protocol(model, ema, real):
        return FIDEvaluator(
            model,
            real,
            DigitsFeatureExtractor(),
            ema=ema.model,
            schedule=EveryNSteps(args.every, n=args.full_n, mode="full"),
            batch_size=500,
            cache_dir="",
            log=quiet,
        )

    ev_a, wall_a = train(args.steps, budget)
    ev_b, wall_b = train(args.steps, protocol)
    for name, ev, wall in (
        ("(a) fideval, 10% budget", ev_a, wall_a),
        (f"(b) DDPM protocol, {args.full_n} every {args.every}", ev_b, wall_b),
    ):
        train_s = wall - ev.eval_seconds
        print(
            f"{name}: {len(ev.records)} evaluations, eval {ev.eval_seconds:.0f} s vs "
            f"training {train_s:.0f} s -> {ev.eval_seconds / train_s:.1%} of training time"
        )
    print(f"\n{'step':>6}  {'(a) FID [95% CI]':>28}  {'n':>6}   {'(b) FID':>9}  {'n':>6}")
    b_by_step = {r.step: r for r in ev_b.records}
    steps = sorted({r.step for r in ev_a.records} | set(b_by_step))
    a_by_step = {r.step: r for r in ev_a.records}
    for s in steps:
        a, b = a_by_step.get(s), b_by_step.get(s)
        left = (
            f"{a.fid:9.2f} [{a.fid_ci95[0]:7.2f}, {a.fid_ci95[1]:7.2f}]  {a.n:6d}"
            if a
            else " " * 36
        )
        right = f"{b.fid:9.2f}  {b.n:6d}" if b else ""
        print(f"{s:6d}  {left}   {right}")
    ratio = ev_b.eval_seconds / max(ev_a.eval_seconds, 1e-9)
    print(f"\nevaluation time ratio (b)/(a): {ratio:.1f}x")


if __name__ == "__main__":
    main()
