"""Paired checkpoint comparisons and the adaptive budget, validated on fideval's demo model.

Trains the demo's TinyDiffusion on sklearn's digits (the ``fideval demo`` recipe: seed 0,
batch 128, AdamW 2e-3, EMA 0.999) and keeps the EMA weights at two steps (default 5 000
and 6 000). Features are the shipped digits CNN's (d = 64); the reference is the 1 797
real digits, held as statistics (as FIDEvaluator holds it: the comparison is conditional
on the reference, so the truth below is too). Every sample is drawn from
``SampleNoise(seed, i)``: with the same seed and index, both checkpoints see the same noise.

``--part compare``: R repetitions; repetition r uses samples r·n … (r + 1)·n − 1 of
seed 1 for both checkpoints (paired); the unpaired comparison of repetition r takes a
from repetition r and b from repetition r + 1 (mod R), so its two sides have independent
noise. The true difference is FD(a) − FD(b) from ``--truth-n`` samples per side (seed 2,
paired, so its own noise is small). Prints coverage of the true difference by the 95%
intervals, their median half-widths, and the SD of the estimates over repetitions.

``--part adaptive``: ``AdaptiveEstimator(tolerance)`` run ``--runs`` times on the later
checkpoint, with the old variance (10-group jackknife) and the new one (per-sample
influence values), each run reading a random permutation of a pool of ``--pool``
generated samples (seed 3) in batches of 500. Prints the samples used (min, quartiles,
max) and the coverage of E[FD at 50 000] (mean FD of the pool's disjoint 50 000-sample
blocks) by the final intervals.

    python benchmarks/validate_compare.py --part compare --reps 40 --n 2000 --truth-n 100000
    python benchmarks/validate_compare.py --part adaptive --runs 100 --tolerance 1.0

Everything generated is cached under ``--cache`` (checkpoints and feature blocks), so a
rerun with other sizes reuses what it can. One torch thread (fastest for this model).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fideval.estimate import AdaptiveEstimator
from fideval.features.digits import DigitsFeatureExtractor, load_digits_images
from fideval.frechet import FrechetReference
from fideval.metrics.compare import compare_features
from fideval.stats import GaussianStats
from fideval.train import demo_diffusion as dd
from fideval.train.samplers import SampleNoise

BATCH = 500


def train(cache: Path, steps: list[int], seed: int = 0) -> dict[int, Path]:
    """EMA weights of the demo recipe at ``steps`` (trained once, cached)."""
    paths = {s: cache / f"ema_{s}.pt" for s in steps}
    if all(p.exists() for p in paths.values()):
        return paths
    torch.manual_seed(seed)
    real = load_digits_images()
    model = dd.TinyDiffusion()
    ema = dd.EMA(model, 0.999)
    opt = dd.make_optimizer(model, lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for step in range(1, max(steps) + 1):
        idx = torch.randint(0, real.shape[0], (128,), generator=gen)
        dd.train_step(model, opt, real[idx], ema=ema)
        if step in paths:
            torch.save(ema.model.state_dict(), paths[step])
    print(f"# trained {max(steps)} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    return paths


class Features:
    """Digits-CNN features of checkpoint samples ``start … start + count − 1`` (cached)."""

    def __init__(self, cache: Path, paths: dict[int, Path]) -> None:
        self.cache = cache
        self.paths = paths
        self.models: dict[int, dd.TinyDiffusion] = {}
        self.extractor = DigitsFeatureExtractor().eval()
        self.sampled = 0
        self.seconds = 0.0

    def model(self, step: int) -> dd.TinyDiffusion:
        if step not in self.models:
            m = dd.TinyDiffusion()
            m.load_state_dict(torch.load(self.paths[step], weights_only=True))
            self.models[step] = m.eval()
        return self.models[step]

    def block(self, step: int, seed: int, start: int, count: int) -> np.ndarray:
        """Blocks are cached in units of 10 000 samples."""
        unit = 10_000
        out = []
        for b in range(start // unit, (start + count - 1) // unit + 1):
            path = self.cache / f"feat_{step}_s{seed}_{b}.npy"
            if not path.exists():
                np.save(path, self._draw(step, seed, b * unit, unit))
            arr = np.load(path)
            lo = max(start - b * unit, 0)
            hi = min(start + count - b * unit, unit)
            out.append(arr[lo:hi])
        return np.concatenate(out)

    @torch.inference_mode()
    def _draw(self, step: int, seed: int, start: int, count: int) -> np.ndarray:
        t0 = time.perf_counter()
        model = self.model(step)
        parts = []
        for s in range(start, start + count, BATCH):
            c = min(BATCH, start + count - s)
            images = model.sample(c, noise=SampleNoise(seed, s, c))
            parts.append(self.extractor(images).double().numpy())
        self.sampled += count
        self.seconds += time.perf_counter() - t0
        return np.concatenate(parts)


def reference_stats(extractor: DigitsFeatureExtractor) -> GaussianStats:
    with torch.inference_mode():
        feats = extractor(load_digits_images()).double()
    stats = GaussianStats()
    stats.update(feats)
    return stats


def _q(x: list[float] | np.ndarray) -> str:
    a = np.asarray(x, dtype=float)
    return f"{np.median(a):.3f}"


def part_compare(args: argparse.Namespace, feats: Features, ref: GaussianStats) -> dict:
    a_step, b_step = args.steps
    n, reps = args.n, args.reps
    t0 = time.perf_counter()
    truth_a = feats.block(a_step, 2, 0, args.truth_n)
    truth_b = feats.block(b_step, 2, 0, args.truth_n)
    kernel = FrechetReference(ref.mean, ref.cov, n=ref.n)
    fd_a = kernel.compare_features(truth_a).value
    fd_b = kernel.compare_features(truth_b).value
    truth = fd_a - fd_b
    truth_cmp = compare_features(truth_a, truth_b, ref, paired=True)
    print(
        f"# truth from {args.truth_n} samples per side: FD({a_step}) = {fd_a:.3f}, "
        f"FD({b_step}) = {fd_b:.3f}, difference {truth:.3f} ± {truth_cmp.half_width:.3f} "
        f"(its own paired 95% half-width)",
        flush=True,
    )
    xa = [feats.block(a_step, 1, r * n, n) for r in range(reps)]
    xb = [feats.block(b_step, 1, r * n, n) for r in range(reps)]
    ref_feats = None
    if args.reference_features:
        with torch.inference_mode():
            ref_feats = feats.extractor(load_digits_images()).double().numpy()
    rows: dict[str, list] = {k: [] for k in ("paired", "unpaired", "paired_ref")}
    for r in range(reps):
        rows["paired"].append(compare_features(xa[r], xb[r], ref, paired=True))
        rows["unpaired"].append(compare_features(xa[r], xb[(r + 1) % reps], ref, paired=False))
        if ref_feats is not None:
            rows["paired_ref"].append(compare_features(xa[r], xb[r], ref_feats, paired=True))
    fids_a = [c.fid_a for c in rows["paired"]]
    fids_b = [c.fid_b for c in rows["paired"]]
    print(
        f"# FID({a_step}) at n={n}: {np.mean(fids_a):.2f} ± {np.std(fids_a, ddof=1):.2f} sd; "
        f"FID({b_step}): {np.mean(fids_b):.2f} ± {np.std(fids_b, ddof=1):.2f} sd ({reps} reps)"
    )
    header = (
        f"| {'comparison':<28} | covers truth | median ±half-width | mean SE | "
        f"SD of D̂ over reps | mean D̂ − truth |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    out: dict = {"truth": truth, "truth_half_width": truth_cmp.half_width, "rows": {}}
    labels = {
        "paired": "paired (ref. as statistics)",
        "unpaired": "unpaired (ref. as statistics)",
        "paired_ref": "paired (ref. features)",
    }
    for key, comps in rows.items():
        if not comps:
            continue
        cover = sum(c.ci95[0] <= truth <= c.ci95[1] for c in comps)
        halves = [c.half_width for c in comps]
        diffs = [c.difference for c in comps]
        ses = [c.se for c in comps]
        print(
            f"| {labels[key]:<28} | {cover:>3}/{len(comps)} ({cover / len(comps):.0%}) | "
            f"{_q(halves):>18} | {np.mean(ses):7.3f} | {np.std(diffs, ddof=1):17.3f} | "
            f"{np.mean(diffs) - truth:+15.3f} |"
        )
        out["rows"][key] = {
            "coverage": cover / len(comps),
            "covered": int(cover),
            "reps": len(comps),
            "median_half_width": float(np.median(halves)),
            "mean_se": float(np.mean(ses)),
            "sd_difference": float(np.std(diffs, ddof=1)),
            "mean_difference": float(np.mean(diffs)),
        }
    ratio = (
        out["rows"]["unpaired"]["median_half_width"] / out["rows"]["paired"]["median_half_width"]
    )
    out["width_ratio"] = ratio
    print(f"# unpaired / paired median half-width: {ratio:.2f}×")
    print(f"# compare part: {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def part_adaptive(args: argparse.Namespace, feats: Features, ref: GaussianStats) -> dict:
    step = args.steps[1]
    t0 = time.perf_counter()
    pool = feats.block(step, 3, 0, args.pool)
    kernel = FrechetReference(ref.mean, ref.cov, n=ref.n)
    blocks = [pool[i : i + 50_000] for i in range(0, len(pool) - 49_999, 50_000)]
    target = float(np.mean([kernel.compare_features(b).value for b in blocks]))
    print(
        f"# adaptive: checkpoint {step}, tolerance ±{args.tolerance}, pool {len(pool)}; "
        f"E[FD at 50 000] ≈ {target:.3f} (mean of {len(blocks)} disjoint 50 000-blocks)",
        flush=True,
    )
    print(
        "| variance | runs | samples used: min / 25% / median / 75% / max | "
        "reached | covers E[FD_50k] |"
    )
    print("|---|---|---|---|---|")
    out: dict = {"target": target, "rows": {}}
    for variance in ("groups", "influence"):
        used, covered, reached = [], 0, 0
        for run in range(args.runs):
            order = np.random.default_rng(run).permutation(len(pool))
            est = AdaptiveEstimator(
                kernel,
                args.tolerance,
                max_samples=min(args.max_samples, len(pool)),
                batch_size=BATCH,
                variance=variance,
            )
            pos = 0
            while not est.done:
                est.update(pool[order[pos : pos + BATCH]])
                pos += BATCH
            res = est.estimate()
            used.append(res.n_used)
            lo, hi = res.fid_at_target_ci95
            covered += lo <= target <= hi
            reached += res.stopped_because == "tolerance reached"
        q = np.percentile(used, [0, 25, 50, 75, 100]).astype(int)
        print(
            f"| {variance} | {args.runs} | {' / '.join(str(v) for v in q)} | "
            f"{reached}/{args.runs} | {covered}/{args.runs} ({covered / args.runs:.0%}) |",
            flush=True,
        )
        out["rows"][variance] = {
            "samples_used": [int(v) for v in used],
            "quantiles": [int(v) for v in q],
            "coverage": covered / args.runs,
            "reached": reached,
        }
    print(f"# adaptive part: {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("compare", "adaptive", "both"), default="both")
    ap.add_argument("--steps", type=int, nargs=2, default=[5000, 6000])
    ap.add_argument("--n", type=int, default=2000, help="samples per side and repetition")
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--truth-n", type=int, default=100_000)
    ap.add_argument("--reference-features", action="store_true", help="also the features route")
    ap.add_argument("--runs", type=int, default=100, help="adaptive runs per variance")
    ap.add_argument("--tolerance", type=float, default=1.0)
    ap.add_argument("--pool", type=int, default=200_000)
    ap.add_argument("--max-samples", type=int, default=50_000)
    ap.add_argument("--cache", default="/tmp/fideval-validate-compare")
    ap.add_argument("--out", default=None, help="write the figures as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    feats = Features(cache, train(cache, list(args.steps)))
    ref = reference_stats(feats.extractor)
    result: dict = {"args": vars(args)}
    if args.part in ("compare", "both"):
        result["compare"] = part_compare(args, feats, ref)
    if args.part in ("adaptive", "both"):
        result["adaptive"] = part_adaptive(args, feats, ref)
    if feats.sampled:
        rate = feats.sampled / max(feats.seconds, 1e-9)
        print(f"# generated {feats.sampled} samples in {feats.seconds:.0f} s ({rate:.0f}/s)")
    print(f"# total {time.perf_counter() - t0:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
