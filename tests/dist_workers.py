"""Worker functions for tests/test_distributed.py (spawned processes import this module)."""

from __future__ import annotations

import os
import pickle
import traceback

import numpy as np
import torch
import torch.distributed as dist

from fideval import distributed as fd
from fideval.frechet import frechet_details
from fideval.stats import GaussianStats, GroupedStats


def data(n: int = 1003, d: int = 7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * rng.uniform(0.5, 3, d) + 50.0


def _init(rank: int, world: int, store: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)


def run(rank: int, world: int, store: str, out: str, task: str) -> None:
    _init(rank, world, store)
    try:
        result = TASKS[task]()
    except Exception as exc:  # report, then exit cleanly
        result = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
    with open(os.path.join(out, f"rank{rank}.pkl"), "wb") as fh:
        pickle.dump(result, fh)
    dist.destroy_process_group()


def task_stats() -> dict:
    x = data()
    start, stop = fd.shard_range(len(x))
    s = GaussianStats()
    for chunk in np.array_split(x[start:stop], 3):
        if len(chunk):
            s.update(chunk)
    merged = fd.all_reduce_stats(s)
    ref = data(n=500, seed=1)
    fid = frechet_details(merged.mean, merged.cov, ref.mean(0), np.cov(ref, rowvar=False)).value
    return {
        "range": (start, stop),
        "n": merged.n,
        "mean": merged.mean,
        "cov": merged.cov,
        "fid": fid,
    }


def task_grouped() -> dict:
    x = data(n=211)
    start, stop = fd.shard_range(len(x))
    g = GroupedStats(4, offset=start)
    g.update(x[start:stop])
    merged = fd.all_reduce_grouped(g)
    return {
        "groups": [(merged.group(i).n, merged.group(i).mean, merged.group(i).cov) for i in range(4)]
    }


def task_error() -> dict:
    with fd.collective_guard("test work"):
        if fd.rank() == 1:
            raise ValueError("rank one broke")
    return {"ok": True}


class Ext(torch.nn.Module):
    """A nonlinear map of 4×4 images to 5-d features that is exact by construction.

    Pixels are rounded to sixteenths and projected with small integer weights, so every
    product and partial sum is an integer below 2**24: float32 represents them exactly
    and the result does not depend on how rows are batched or which kernel the CPU runs.
    (A float32 GEMM does: its summation order changes with the batch shape.)
    """

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.randint(-3, 4, (16, 5), generator=g).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.round(x.flatten(1) * 16) @ self.w
        return h + 0.125 * h.abs()

    def provenance(self) -> dict:
        return {"extractor": "t", "weights_sha256": "0", "dims": 5, "profile": "unit"}


def task_evaluator() -> dict:
    from fideval.train import EveryNSteps, FIDEvaluator

    real = torch.rand(301, 1, 4, 4, generator=torch.Generator().manual_seed(3))

    def sampler(b):
        return torch.rand(b, 1, 4, 4) * 0.8

    out = os.environ["FIDEVAL_TEST_OUT"]
    seen = []
    ev = FIDEvaluator(
        sampler,
        real,
        Ext(),
        schedule=EveryNSteps(2, n=403),
        batch_size=50,
        groups=4,
        cache_dir=os.path.join(out, "cache"),
        log_path=os.path.join(out, "log.jsonl"),
        callbacks=[seen.append],
        log=lambda m: None,
    )
    records = [ev.step(s) for s in range(1, 5)]
    adaptive = ev.evaluate(6, mode="adaptive", n=1200, tolerance=0.05)
    return {
        "records": [r.to_dict() for r in records if r is not None],
        "adaptive": adaptive.to_dict(),
        "callbacks": len(seen),
        "ref_n": ev.reference.record.n,
        "ref_mu": ev.reference.record.mu,
        "ref_sigma": ev.reference.record.sigma,
    }


def task_local_only() -> dict:
    """Only rank 0 evaluates (as denoising-diffusion-pytorch's Trainer does): no hang."""
    from fideval.train import EveryNSteps, FIDEvaluator

    real = torch.rand(301, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    out = {}
    if fd.rank() == 0:
        ev = FIDEvaluator(
            lambda b: torch.rand(b, 1, 4, 4) * 0.8,
            real,
            Ext(),
            schedule=EveryNSteps(2, n=403),
            batch_size=50,
            groups=4,
            cache_dir="",
            log=lambda m: None,
        )
        with fd.local_only():
            rec = ev.evaluate(2, n=403)
        out = {"n": rec.n, "m": rec.m}
    dist.barrier()
    return out


TASKS = {
    "local_only": task_local_only,
    "stats": task_stats,
    "grouped": task_grouped,
    "error": task_error,
    "evaluator": task_evaluator,
}
