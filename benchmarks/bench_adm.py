"""Benchmark of ``fideval adm``: peak memory against loading ``arr_0`` whole; images/s.

1. Peak memory. A synthetic sample batch (``--n`` images of ``--size``², uint8, stored
   ``.npz``) and a small reference batch are written to a temporary folder. Each step
   runs in a fresh Python process that first imports torch and fideval, then resets its
   RSS high-water mark (Linux ``/proc/self/clear_refs``), runs the step and reports how
   far its peak RSS rose above the post-import level:

   * ``np.load whole``: ``np.load(SAMPLE)["arr_0"]`` (an ``.npz`` member cannot be
     memory-mapped, so this is what loading it costs);
   * ``stream arr_0``: fideval's reader over all rows in batches;
   * ``fideval adm``: the whole suite (network on every image of both files, FID,
     sFID, IS, precision/recall).

   The suite holds one batch of images and its network activations, plus the pool_3
   features of all images (N × 2048 float32 = 8 KiB per image). A whole load grows by
   H·W·3 bytes per image (192 KiB at 256²: 9.8 GB for 50 000). The last line projects
   both to a 50 000 × 256² sample file.

2. Speed. images/s of fideval's ADM path (TF1 resize + FID Inception + the sFID hook,
   default memory layout) against torch-fidelity's ``FeatureExtractorInceptionV3``
   (its TF1 resize, plus a hook on ``Mixed_6d.branch1x1``) on the same uint8 images:
   same batch size, threads and precision (float32), one warm-up batch each, then the
   two paths' batches interleaved (a change of load on a shared machine hits both
   alike), median seconds per batch.

Usage::

    python benchmarks/bench_adm.py                      # 5000 × 64², the defaults
    python benchmarks/bench_adm.py --n 1000 --rounds 4  # shorter

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

# Appended after a step's imports: reset the high-water mark, remember the RSS.
RESET = """
def _status():
    return dict(ln.split(":", 1) for ln in open("/proc/self/status"))
try:
    with open("/proc/self/clear_refs", "w") as _f:
        _f.write("5")
    _BASE = int(_status()["VmRSS"].split()[0]) * 1024
except (OSError, KeyError):
    _BASE = -1
"""
# Appended after the step: the peak since the reset (or since the start, without one).
PEAK = """
import resource
try:
    _HWM = int(_status()["VmHWM"].split()[0]) * 1024
except (OSError, KeyError):
    _HWM = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("PEAK", _HWM, _BASE)
"""


def run_step(setup: str, code: str) -> dict:
    """``setup``, reset of the high-water mark, ``code``, in a fresh interpreter.

    Returns ``peak`` (bytes), ``base`` (RSS after ``setup``; −1 when the mark could not
    be reset, then ``peak`` includes the imports), ``wall`` seconds and ``stdout``.
    """
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", "\n".join([setup, RESET, code, PEAK])],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{code}\n{out.stderr}")
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("PEAK"))
    peak, base = (int(v) for v in line.split()[1:])
    return {"peak": peak, "base": base, "wall": wall, "stdout": out.stdout}


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
    setup = "\n".join(
        [
            f"import torch; torch.set_num_threads({threads})",
            "import numpy as np, warnings",
            "warnings.simplefilter('ignore')",
            "from fideval.cli import main",
            "from fideval.io.adm_npz import open_npz_array",
            "import fideval.metrics.adm, fideval.features.inception",
        ]
    )
    args = ["adm", str(ref), str(sample), "--weights", str(weights), "--device", "cpu"]
    args += ["--batch-size", str(batch), "--no-progress", "--json"]
    steps = {
        "np.load whole": f"x = np.load({str(sample)!r})['arr_0']; s = int(x[:, 0, 0, 0].sum())",
        "stream arr_0": f"with open_npz_array({str(sample)!r}) as r:\n"
        f"    s = sum(int(b[:, 0, 0, 0].sum()) for b in r.batches({batch}))",
        "fideval adm": f"rc = main({args!r})",
    }
    res = {name: run_step(setup, code) for name, code in steps.items()}
    line = next(ln for ln in res["fideval adm"]["stdout"].splitlines() if ln.startswith("{"))
    return {"steps": res, "result": json.loads(line)}


def speed(weights: Path, images: np.ndarray, batch: int, rounds: int) -> dict[str, float]:
    """images/s of each path from its median seconds per batch (interleaved batches)."""
    from fideval.features.inception import InceptionExtractor
    from fideval.metrics.adm import ADMInception

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ext = InceptionExtractor(2048, weights=weights, device="cpu")
    net = ADMInception(ext)
    paths = {"fideval": net}
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        FeatureExtractorInceptionV3 = None
    if FeatureExtractorInceptionV3 is not None:
        tf = FeatureExtractorInceptionV3(
            "inception-v3-compat",
            ["2048", "logits_unbiased"],
            feature_extractor_weights_path=str(weights),
        )
        kept = {}

        def hook(module, inputs, out):
            kept["s"] = out[:, :7].permute(0, 2, 3, 1).reshape(len(out), -1).clone()

        tf.Mixed_6d.branch1x1.register_forward_hook(hook)

        def run_tf(b: np.ndarray):
            with torch.inference_mode():
                return tf(torch.from_numpy(b).permute(0, 3, 1, 2).contiguous())

        paths["torch-fidelity"] = run_tf
    times: dict[str, list[float]] = {k: [] for k in paths}
    starts = list(range(0, len(images) - batch + 1, batch)) or [0]
    for fn in paths.values():  # warm-up
        fn(images[:batch])
    for r in range(rounds):
        s = starts[r % len(starts)]
        for name, fn in paths.items():
            t0 = time.perf_counter()
            fn(images[s : s + batch])
            times[name].append(time.perf_counter() - t0)
    net.close()
    return {k: batch / float(np.median(v)) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="sample images (default 5000)")
    ap.add_argument("--ref", type=int, default=200, help="reference images (default 200)")
    ap.add_argument("--size", type=int, default=64, help="image side (default 64)")
    ap.add_argument("--batch", type=int, default=64, help="batch size (default 64, ADM's)")
    ap.add_argument("--speed-images", type=int, default=128, help="images for the speed test")
    ap.add_argument("--rounds", type=int, default=6, help="timed batches per path (default 6)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--skip-memory", action="store_true", help="only the speed test")
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
            steps = mem["steps"]
            print("\npeak RSS above the imports (fresh process each):")
            for name, st in steps.items():
                grow = st["peak"] - max(st["base"], 0)
                note = "" if st["base"] >= 0 else "  (no reset: includes imports)"
                print(f"  {name:<16} {mib(grow)}{note}")
            n_all = args.n + args.ref
            wall = steps["fideval adm"]["wall"]
            print(f"  fideval adm: {wall:.1f} s for {n_all} images ({n_all / wall:.2f} images/s)")
            r = mem["result"]
            print(
                f"  (IS {r['inception_score']:.4f}, FID {r['fid']:.4g}, sFID {r['sfid']:.4g}, "
                f"P {r['precision']:.3f}, R {r['recall']:.3f})"
            )
            st = steps["fideval adm"]
            fixed = st["peak"] - max(st["base"], 0) - n_all * 2048 * 4
            print(
                "\nprojected to 50 000 × 256² samples + 10 000 references, above the imports: "
                f"np.load whole ≥ {mib(50000 * 256 * 256 * 3).strip()}; "
                f"fideval adm ≈ {mib(fixed + 60000 * 2048 * 4).strip()} "
                "(the same batch and activations, plus 8 KiB of pool_3 per image)"
            )
        rng = np.random.default_rng(1)
        imgs = rng.integers(0, 256, (args.speed_images, args.size, args.size, 3), dtype=np.uint8)
        batch = min(args.batch, args.speed_images)
        sp = speed(weights, imgs, batch, args.rounds)
        print(f"\nimages/s, median of {args.rounds} interleaved batches of {batch} ({args.size}²):")
        print(f"  fideval ADM path   {sp['fideval']:8.2f}")
        if "torch-fidelity" not in sp:
            print("  torch-fidelity     (not installed)")
        else:
            ratio = sp["fideval"] / sp["torch-fidelity"]
            print(
                f"  torch-fidelity     {sp['torch-fidelity']:8.2f}   fideval/torch-fidelity {ratio:.2f}×"
            )


if __name__ == "__main__":
    main()
