"""Benchmark of ``fideval adm``: peak memory against loading ``arr_0`` whole; images/s.

1. Peak memory. A synthetic sample batch (``--n`` images of ``--size``², uint8, stored
   ``.npz``) and a small reference batch are written to a temporary folder. Each of
   these runs in a fresh Python process, which reports its own peak RSS
   (``ru_maxrss``):

   * ``import``: importing fideval and torch (the floor of every process below);
   * ``np.load whole``: ``np.load(SAMPLE)["arr_0"]``, what ``np.load`` does (an
     ``.npz`` member cannot be memory-mapped);
   * ``stream arr_0``: fideval's reader over all rows in batches of 64;
   * ``fideval adm``: the whole suite (network on every image of both files, FID,
     sFID, IS, precision/recall).

   The suite keeps only pool_3 features (N × 2048 float32 = 8 KiB per image) and one
   batch of images, so its peak grows by 8 KiB per image where a whole load grows by
   H·W·3 bytes (196 KiB per 256² image: 9.8 GB for 50 000). The last lines project
   both to a 50 000 × 256² file.

2. Speed. images/s of fideval's ADM path (TF1 resize + FID Inception + the sFID hook,
   default memory layout) against torch-fidelity's ``FeatureExtractorInceptionV3``
   (its TF1 resize, plus a hook on ``Mixed_6d.branch1x1``) on the same uint8 images,
   same batch size, same threads, float32, after one warm-up batch.

Usage::

    python benchmarks/bench_adm.py --n 5000 --size 64        # the defaults
    python benchmarks/bench_adm.py --n 1000 --speed-images 64  # shorter

Random weights (``seeded_random_state_dict``) stand in for the real file: speed and
memory do not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

PEAK = (
    "import resource, sys; print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
)


def run_peak(code: str) -> tuple[int, float, str]:
    """Run ``code`` in a fresh interpreter; its peak RSS (bytes), wall seconds, stdout."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code + "\n" + PEAK], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{code}\n{out.stderr}")
    peak = int(next(ln for ln in out.stdout.splitlines() if ln.startswith("PEAK")).split()[1])
    return peak, wall, out.stdout


def mib(b: float) -> str:
    return f"{b / 2**20:9.1f} MiB"


def make_files(folder: Path, n: int, ref_n: int, size: int) -> tuple[Path, Path, Path]:
    from fideval.features.inception import seeded_random_state_dict

    weights = folder / "inception_random.pth"
    torch.save(seeded_random_state_dict(0), weights)
    rng = np.random.default_rng(0)
    # Built whole here: this process's memory is not what is measured.
    sample = folder / "sample.npz"
    np.savez(sample, arr_0=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))
    ref = folder / "ref.npz"
    np.savez(ref, arr_0=rng.integers(0, 256, (ref_n, size, size, 3), dtype=np.uint8))
    return weights, sample, ref


def memory(weights: Path, sample: Path, ref: Path, batch: int, threads: int) -> dict:
    setup = (
        f"import torch; torch.set_num_threads({threads}); import numpy as np; import fideval.cli"
    )
    res = {}
    res["import"], _, _ = run_peak(setup)
    res["np.load whole"], _, _ = run_peak(
        setup + f"\nx = np.load({str(sample)!r})['arr_0']; x.sum()"
    )
    res["stream arr_0"], _, _ = run_peak(
        setup
        + "\nfrom fideval.io.adm_npz import open_npz_array"
        + f"\nwith open_npz_array({str(sample)!r}) as r:\n    s = sum(int(b[:, 0, 0, 0].sum()) for b in r.batches({batch}))"
    )
    args = ["adm", str(ref), str(sample), "--weights", str(weights), "--device", "cpu"]
    args += ["--batch-size", str(batch), "--no-progress", "--json"]
    code = (
        setup
        + "\nimport warnings; warnings.simplefilter('ignore')"
        + "\nfrom fideval.cli import main"
        + f"\nrc = main({args!r})"
    )
    res["fideval adm"], wall, out = run_peak(code)
    result = json.loads(next(ln for ln in out.splitlines() if ln.startswith("{")))
    return {"peaks": res, "wall": wall, "result": result}


def speed(weights: Path, images: np.ndarray, batch: int) -> dict:
    from fideval.features.inception import InceptionExtractor
    from fideval.metrics.adm import ADMInception

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ext = InceptionExtractor(2048, weights=weights, device="cpu")
    with ADMInception(ext) as net:
        net(images[:batch])  # warm-up
        t0 = time.perf_counter()
        for s in range(0, len(images), batch):
            net(images[s : s + batch])
        out["fideval"] = len(images) / (time.perf_counter() - t0)
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        out["torch-fidelity"] = None
        return out
    tf = FeatureExtractorInceptionV3(
        "inception-v3-compat",
        ["2048", "logits_unbiased"],
        feature_extractor_weights_path=str(weights),
    )
    kept = {}
    tf.Mixed_6d.branch1x1.register_forward_hook(
        lambda m, i, o: kept.__setitem__(
            "s", o[:, :7].permute(0, 2, 3, 1).reshape(len(o), -1).clone()
        )
    )
    nchw = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    with torch.inference_mode():
        tf(nchw[:batch])
        t0 = time.perf_counter()
        for s in range(0, len(images), batch):
            tf(nchw[s : s + batch])
        out["torch-fidelity"] = len(images) / (time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="sample images (default 5000)")
    ap.add_argument("--ref", type=int, default=200, help="reference images (default 200)")
    ap.add_argument("--size", type=int, default=64, help="image side (default 64)")
    ap.add_argument("--batch", type=int, default=64, help="batch size (default 64, ADM's)")
    ap.add_argument("--speed-images", type=int, default=128, help="images timed per path")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        weights, sample, ref = make_files(Path(tmp), args.n, args.ref, args.size)
        print(
            f"sample file: {args.n} × {args.size}² × 3 uint8 = {mib(sample.stat().st_size)}; "
            f"reference {args.ref} images; {args.threads} threads; torch {torch.__version__}"
        )
        if not args.skip_memory:
            mem = memory(weights, sample, ref, args.batch, args.threads)
            peaks = mem["peaks"]
            base = peaks["import"]
            print("\npeak RSS (fresh process each)      peak        above import")
            for name, value in peaks.items():
                print(f"  {name:<30} {mib(value)}  {mib(value - base)}")
            n_all = args.n + args.ref
            print(
                f"  fideval adm wall time: {mem['wall']:.1f} s ({n_all / mem['wall']:.1f} images/s, both files)"
            )
            r = mem["result"]
            print(
                f"  (IS {r['inception_score']:.4f}, FID {r['fid']:.4g}, sFID {r['sfid']:.4g}, "
                f"P {r['precision']:.3f}, R {r['recall']:.3f})"
            )
            whole_50k = 50000 * 256 * 256 * 3
            suite_extra = peaks["fideval adm"] - base - n_all * 2048 * 4
            ours_50k = base + suite_extra + 60000 * 2048 * 4
            print(
                f"\nprojected to 50 000 × 256² samples + 10 000 references: np.load whole "
                f"{mib(base + whole_50k)}; fideval adm ≈{mib(ours_50k)} (pool_3 features kept: 8 KiB/image)"
            )
        rng = np.random.default_rng(1)
        imgs = rng.integers(0, 256, (args.speed_images, args.size, args.size, 3), dtype=np.uint8)
        sp = speed(weights, imgs, min(args.batch, args.speed_images))
        print(
            f"\nimages/s on {args.speed_images} images of {args.size}² (batch {min(args.batch, args.speed_images)}):"
        )
        print(f"  fideval ADM path      {sp['fideval']:8.2f}")
        if sp["torch-fidelity"] is None:
            print("  torch-fidelity        (not installed)")
        else:
            print(
                f"  torch-fidelity        {sp['torch-fidelity']:8.2f}   ratio {sp['fideval'] / sp['torch-fidelity']:.2f}×"
            )


if __name__ == "__main__":
    main()
