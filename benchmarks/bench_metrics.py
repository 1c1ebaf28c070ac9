"""Time and peak memory of fideval's KID and PRDC against store-everything anchors.

Anchors (optional, skipped when not installed):

* KID: ``torchmetrics.image.kid.KernelInceptionDistance`` fed features through an
  identity extractor (it keeps every feature, then computes subset kernels).
* PRDC: the ``prdc`` package (Naeem et al.'s reference): three full N×M
  ``sklearn.metrics.pairwise_distances`` matrices.

Each measurement runs in a fresh subprocess; "extra" memory is the child's peak
RSS minus its RSS once the float32 features are in memory. Example:

    python benchmarks/bench_metrics.py --n 50000 --d 2048 --anchor-n 20000 --prdc-float32

Install anchors without touching torch:
``pip install --no-deps torchmetrics lightning-utilities prdc``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(impl: str, metric: str, n: int, d: int, opts: dict) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(opts["threads"])
    rng = np.random.default_rng(0)
    real = rng.standard_normal((n, d), dtype=np.float32)
    fake = rng.standard_normal((n, d), dtype=np.float32)
    fake *= 1.05
    fake += 0.02
    base = _rss_mib()
    t0 = time.perf_counter()
    if impl == "fideval" and metric == "kid":
        from fideval.metrics import kid

        dtype = "float32" if opts["kid_float32"] else "float64"
        r = kid(
            real,
            fake,
            subsets=opts["subsets"],
            subset_size=opts["subset_size"],
            seed=0,
            dtype=dtype,
        )
        out = {"kid": r.value, "kid_std": r.std, "dtype": dtype}
    elif impl == "fideval" and metric == "prdc":
        from fideval.metrics import prdc

        dtype = "float32" if opts["prdc_float32"] else "float64"
        r = prdc(real, fake, k=5, dtype=dtype)
        out = r.to_dict()
        out["dtype"] = dtype
    elif impl == "torchmetrics" and metric == "kid":
        from torchmetrics.image.kid import KernelInceptionDistance

        class Identity(torch.nn.Module):
            num_features = d

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x

        torch.manual_seed(0)
        m = KernelInceptionDistance(
            feature=Identity(), subsets=opts["subsets"], subset_size=opts["subset_size"]
        )
        for s in range(0, n, 1000):
            m.update(torch.from_numpy(real[s : s + 1000]), real=True)
            m.update(torch.from_numpy(fake[s : s + 1000]), real=False)
        mean, std = m.compute()
        out = {"kid": float(mean), "kid_std": float(std)}
    elif impl == "prdc" and metric == "prdc":
        import contextlib
        import io

        from prdc import compute_prdc

        with contextlib.redirect_stdout(io.StringIO()):
            out = {k: float(v) for k, v in compute_prdc(real, fake, nearest_k=5).items()}
    else:
        raise SystemExit(f"unknown {impl}/{metric}")
    elapsed = time.perf_counter() - t0
    return {
        "impl": impl,
        "metric": metric,
        "n": n,
        "d": d,
        "seconds": elapsed,
        "peak_mib": _peak_mib(),
        "extra_mib": max(0.0, _peak_mib() - base),
        "result": out,
    }


def run_child(impl: str, metric: str, n: int, args: argparse.Namespace) -> dict | None:
    opts = {
        "subsets": args.kid_subsets,
        "subset_size": args.kid_subset_size,
        "prdc_float32": args.prdc_float32,
        "kid_float32": args.kid_float32,
        "threads": args.threads,
    }
    cmd = [sys.executable, __file__, "--_child", json.dumps([impl, metric, n, args.d, opts])]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        print(f"  {impl:>12} {metric:<5} N={n:<6} FAILED (rc {proc.returncode}): {tail[0]}")
        return None
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"  {impl:>12} {metric:<5} N={n:<6} d={args.d:<5} {res['seconds']:9.1f} s  "
        f"peak {res['peak_mib']:8.0f} MiB  extra {res['extra_mib']:8.0f} MiB  "
        f"{json.dumps(res['result'])}",
        flush=True,
    )
    return res


def _ratio(a: dict | None, b: dict | None, key: str) -> str:
    if not a or not b or not a[key]:
        return "n/a"
    return f"{b[key] / max(a[key], 1e-9):.2f}×"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=50_000, help="samples per set for fideval")
    p.add_argument("--d", type=int, default=2048)
    p.add_argument(
        "--anchor-n",
        type=int,
        default=None,
        help="samples per set for the anchors and a same-size fideval run (default --n); "
        "the prdc anchor holds three N×N float32 matrices (≈30 GiB at 50k)",
    )
    p.add_argument("--metrics", default="kid,prdc")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--prdc-float32", action="store_true", help="fideval PRDC blocks in float32")
    p.add_argument("--kid-float32", action="store_true", help="fideval KID kernels in float32")
    p.add_argument("--no-anchor", action="store_true")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--timeout", type=int, default=3600, help="seconds per measurement")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        impl, metric, n, d, opts = json.loads(args._child)
        print(json.dumps(child(impl, metric, n, d, opts)))
        return

    anchor_n = args.anchor_n or args.n
    anchors = {"kid": "torchmetrics", "prdc": "prdc"}
    print(f"# fideval metrics benchmark: d={args.d}, threads={args.threads}")
    for metric in args.metrics.split(","):
        print(f"[{metric}]")
        ours_big = run_child("fideval", metric, args.n, args)
        if args.no_anchor:
            continue
        ours_small = (
            ours_big if anchor_n == args.n else run_child("fideval", metric, anchor_n, args)
        )
        anchor = run_child(anchors[metric], metric, anchor_n, args)
        print(
            f"  ratio anchor/fideval at N={anchor_n}: "
            f"time {_ratio(ours_small, anchor, 'seconds')}, "
            f"extra memory {_ratio(ours_small, anchor, 'extra_mib')}"
        )
        if ours_big is not None:
            print(
                f"  fideval at N={args.n}: {ours_big['seconds']:.1f} s, "
                f"extra {ours_big['extra_mib']:.0f} MiB"
            )


if __name__ == "__main__":
    main()
