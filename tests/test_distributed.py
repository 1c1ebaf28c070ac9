"""torch.distributed on CPU (gloo): sharded statistics equal a single process."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch.multiprocessing as mp

import dist_workers as W
from conftest import free_port
from fideval import distributed as fd
from fideval.frechet import frechet_details
from fideval.stats import GaussianStats, GroupedStats
from fideval.train import compute_reference_stats


def spawn(task: str, world: int, tmp_path) -> list[dict]:
    out = tmp_path / f"{task}-{world}"
    out.mkdir()
    os.environ["FIDEVAL_TEST_OUT"] = str(out)
    mp.spawn(
        W.run,
        args=(world, str(tmp_path / f"store-{task}-{world}"), str(out), task),
        nprocs=world,
        join=True,
    )
    results = []
    for r in range(world):
        with open(out / f"rank{r}.pkl", "rb") as fh:
            results.append(pickle.load(fh))
    for res in results:
        assert "trace" not in res or task == "error", res.get("trace")
    return results


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10, 1003])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_cover_each_item_exactly_once(n, world):
    covered = []
    for r in range(world):
        start, stop = fd.shard_range(n, r, world)
        covered.extend(range(start, stop))
    assert covered == list(range(n))
    sizes = [len(range(*fd.shard_range(n, r, world))) for r in range(world)]
    assert max(sizes) - min(sizes) <= 1


def test_rank_seeds_distinct_and_reproducible():
    seeds = {fd.rank_seed(0, step, rank_=r) for step in range(5) for r in range(4)}
    assert len(seeds) == 20
    assert fd.rank_seed(0, 3, rank_=1) == fd.rank_seed(0, 3, rank_=1)


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_all_reduce_equals_single_process(tmp_path, world):
    x = W.data()
    single = GaussianStats()
    single.update(x)
    ref = W.data(n=500, seed=1)
    fid = frechet_details(single.mean, single.cov, ref.mean(0), np.cov(ref, rowvar=False)).value
    results = spawn("stats", world, tmp_path)
    for res in results:
        assert res["fid"] == pytest.approx(fid, rel=1e-10)
        assert res["n"] == len(x)
        assert rel(res["cov"], single.cov) < 1e-12
        assert rel(res["mean"], single.mean) < 1e-12
    ranges = [res["range"] for res in results]
    assert sum(b - a for a, b in ranges) == len(x)


@pytest.mark.slow
def test_grouped_merge_across_ranks(tmp_path):
    x = W.data(n=211)
    single = GroupedStats(4)
    single.update(x)
    for res in spawn("grouped", 3, tmp_path):
        for g, (n, mean, cov) in enumerate(res["groups"]):
            assert n == single.group(g).n
            assert rel(mean, single.group(g).mean) < 1e-12
            assert rel(cov, single.group(g).cov) < 1e-12


@pytest.mark.slow
def test_a_failing_rank_fails_all_ranks_loudly(tmp_path):
    res = spawn("error", 2, tmp_path)
    assert res[1]["error"] == "ValueError: rank one broke"
    assert "rank(s) 1 failed" in res[0]["error"]


@pytest.mark.slow
def test_evaluator_identical_records_on_both_ranks(tmp_path):
    res = spawn("evaluator", 2, tmp_path)
    a, b = res[0]["records"], res[1]["records"]
    assert [r["step"] for r in a] == [2, 4]
    for ra, rb in zip(a, b, strict=True):
        assert ra["fid"] == rb["fid"] and ra["fid_ci95"] == rb["fid_ci95"]
        assert ra["n"] == rb["n"] == 403
    # Adaptive evaluation: ranks draw shares up to each check and stop together.
    ad0, ad1 = res[0]["adaptive"], res[1]["adaptive"]
    assert ad0["fid"] == ad1["fid"] and ad0["n"] == ad1["n"] and ad0["n"] <= 1200
    assert ad0["stopped_because"] == ad1["stopped_because"]
    assert res[0]["ref_n"] == res[1]["ref_n"] == 301
    # The sharded reference equals the single-process one.
    import torch

    real = torch.rand(301, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    single = compute_reference_stats(real, W.Ext(), cache_dir="")
    for r in res:
        assert rel(r["ref_mu"], single.record.mu) < 1e-12
        assert rel(r["ref_sigma"], single.record.sigma) < 1e-12
    # Only rank 0 wrote the log and called the callbacks.
    assert res[0]["callbacks"] == 3 and res[1]["callbacks"] == 0
    out = tmp_path / "evaluator-2"
    lines = (out / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4, 6]


def run_fideval(args: list[str], *, nproc: int = 1):
    """``python -m fideval ARGS``, under torchrun with ``nproc`` processes when > 1."""
    import subprocess
    import sys

    launcher = [sys.executable, "-m", "fideval"]
    if nproc > 1:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_port",
            str(free_port()),
            "-m",
            "fideval",
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [*launcher, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.slow
def test_torchrun_stats_equals_single_process(tmp_path):
    x = W.data(n=1001, d=6)
    np.save(tmp_path / "f.npy", x)
    r = run_fideval(
        ["stats", str(tmp_path / "f.npy"), "-o", str(tmp_path / "dist.npz"), "--no-progress"],
        nproc=2,
    )
    assert r.stdout.count("wrote") == 1  # only rank 0 writes and prints
    from fideval.io.statsfile import load_stats

    rec = load_stats(tmp_path / "dist.npz")
    assert rec.n == 1001
    assert rel(rec.sigma, np.cov(x, rowvar=False)) < 1e-12


@pytest.mark.slow
def test_torchrun_image_folder_stats_equal_single_process(tmp_path):

    import torch
    from PIL import Image

    from fideval.features.inception import seeded_random_state_dict

    weights = tmp_path / "w.pth"
    torch.save(seeded_random_state_dict(0), weights)
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):  # 7 images over 2 ranks: shards of 4 and 3
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    common = [
        "stats",
        str(folder),
        "--dims",
        "64",
        "--weights",
        str(weights),
        "--num-workers",
        "0",
        "--no-progress",
        "--device",
        "cpu",
    ]
    run_fideval([*common, "-o", str(tmp_path / "s.npz")])
    run_fideval([*common, "-o", str(tmp_path / "d.npz")], nproc=2)
    from fideval.io.statsfile import load_stats

    a, b = load_stats(tmp_path / "s.npz"), load_stats(tmp_path / "d.npz")
    assert a.n == b.n == 7
    assert (
        rel(b.mu, a.mu) < 1e-6 and rel(b.sigma, a.sigma) < 1e-6
    )  # float32 network, batch split differs


@pytest.mark.slow
def test_main_process_only_evaluation_with_local_only(tmp_path):
    res = spawn("local_only", 2, tmp_path)
    assert res[0] == {"n": 403, "m": 301} and res[1] == {}
