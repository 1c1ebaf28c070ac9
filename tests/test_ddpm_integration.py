"""denoising-diffusion-pytorch's Trainer with fideval as its FID scorer (tiny run)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import free_port

pytest.importorskip("denoising_diffusion_pytorch")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]


def load_example():
    spec = importlib.util.spec_from_file_location(
        "ddpm_example", ROOT / "examples" / "denoising_diffusion_pytorch_trainer.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ddpm_example"] = mod
    spec.loader.exec_module(mod)
    return mod


def example_args(data, results, *, samples: int) -> list[str]:
    """The example's flags for a tiny offline run on 8×8 digits (2 steps, 1 evaluation)."""
    return [
        "--data",
        str(data),
        "--steps",
        "2",
        "--every",
        "2",
        "--results",
        str(results),
        "--image-size",
        "8",
        "--channels",
        "1",
        "--extractor",
        "digits",
        "--samples",
        str(samples),
        "--sampling-steps",
        "2",
    ]


@pytest.fixture
def digit_folder(tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = tmp_path / "data"
    folder.mkdir()
    for i, x in enumerate(load_digits().images[:110]):
        Image.fromarray((x / 16 * 255).round().astype(np.uint8), "L").save(folder / f"{i:04d}.png")
    return folder


def test_trainer_with_fideval_scorer(digit_folder, tmp_path):
    results = tmp_path / "results"
    load_example().main(example_args(digit_folder, results, samples=100))
    rows = [json.loads(line) for line in (results / "fid.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2]
    r = rows[0]
    assert r["n"] == 100 and r["fid_ci95"][0] <= r["fid"] <= r["fid_ci95"][1]
    # The reference covers exactly the dataset's 110 files, un-augmented, cached by key.
    assert r["estimate"]["m"] == 110
    cached = list((results / "fideval-cache").glob("ref-*.npz"))
    assert len(cached) == 1
    with np.load(cached[0]) as f:
        meta = json.loads(str(f["meta"]))
    assert meta["cache_key"]["augmentation"] == "none" and meta["cache_key"]["n"] == 110


def test_unaugmented_reference_is_deterministic(digit_folder):
    from fideval.train.integrations.denoising_diffusion_pytorch import UnaugmentedImages

    paths = list(digit_folder.glob("*.png"))[::-1]
    ds = UnaugmentedImages(paths, 8, "L")
    assert ds.paths == sorted(map(str, paths))
    a, b = ds[3], ds[3]
    assert a.shape == (1, 8, 8) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert (a == b).all()  # no random flip


@pytest.mark.slow
def test_trainer_under_accelerate_two_processes(digit_folder, tmp_path):
    """`accelerate launch --num_processes 2`: the Trainer evaluates on its main process only;
    fideval's scorer runs locally there, so nothing hangs, and N and M are exact."""
    import os
    import subprocess

    pytest.importorskip("accelerate")
    results = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        str(ROOT / "examples" / "denoising_diffusion_pytorch_trainer.py"),
        *example_args(digit_folder, results, samples=150),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in (results / "fid.jsonl").read_text().splitlines()]
    assert [(x["step"], x["n"], x["m"]) for x in rows] == [(2, 150, 110)]
