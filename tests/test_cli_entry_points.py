"""`fideval features`, `fideval fid --save-stats` and `--extractor NAME`."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import fideval
from fideval.cli import main
from fideval.features.inception import seeded_random_state_dict
from fideval.io.statsfile import load_stats


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("entry")
    rng = np.random.default_rng(0)
    for side, shift in (("a", 0), ("b", 60)):
        (root / side).mkdir()
        for i in range(8):
            img = np.clip(rng.normal(90 + shift, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / side / f"{i}.png")
    digits = root / "digits"
    digits.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(digits / f"{i}.png")
    weights = root / "w.pth"
    torch.save(seeded_random_state_dict(2), weights)
    return root, weights


def run(args, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_features_then_fid_equals_fid_of_images(setup, capsys):
    root, weights = setup
    flags = ["--dims", "64", "--weights", str(weights), "--num-workers", "0", "--no-progress"]
    for side in ("a", "b"):
        code, _, err = run(
            ["features", str(root / side), "-o", str(root / f"{side}.npy"), *flags], capsys
        )
        assert code == 0, err
    fa, fb = np.load(root / "a.npy"), np.load(root / "b.npy")
    assert fa.shape == (8, 64) and fa.dtype == np.float32
    code, out, err = run(["fid", str(root / "a"), str(root / "b"), *flags, "--json"], capsys)
    assert code == 0, err
    from_images = json.loads(out)["fid"]
    assert from_images == pytest.approx(fideval.frechet_from_features(fa, fb).value, rel=1e-12)
    code, out, _ = run(["distance", str(root / "a.npy"), str(root / "b.npy"), "--json"], capsys)
    assert json.loads(out)["fid"] == pytest.approx(from_images, rel=1e-12)
    # logits for `fideval is`
    code, _, err = run(
        ["features", str(root / "a"), "-o", str(root / "al.npy"), "--logits", *flags], capsys
    )
    assert code == 0, err and np.load(root / "al.npy").shape == (8, 1008)


def test_fid_save_stats_as_pytorch_fid_types_it(setup, capsys):
    root, weights = setup
    flags = ["--dims", "64", "--weights", str(weights), "--num-workers", "0", "--no-progress"]
    code, _, err = run(
        ["fid", "--save-stats", str(root / "a"), str(root / "a.npz"), *flags], capsys
    )
    assert code == 0, err
    rec = load_stats(root / "a.npz")
    feats = np.load(root / "a.npy") if (root / "a.npy").exists() else None
    assert rec.n == 8 and rec.mu.shape == (64,) and rec.meta["extractor"] == "inception-v3-fid"
    if feats is not None:
        np.testing.assert_allclose(rec.mu, feats.astype(np.float64).mean(0), rtol=1e-6)
    code, _, err = run(
        ["fid", "--save-stats", str(root / "a"), str(root / "a.txt"), *flags], capsys
    )
    assert code == 2 and "must end in .npz" in err


def test_extractor_flag_selects_the_registry(setup, capsys):
    root, _ = setup
    ext = fideval.extractor("digits")
    code, _, err = run(
        [
            "stats",
            str(root / "digits"),
            "-o",
            str(root / "d.npz"),
            "--extractor",
            "digits",
            "--num-workers",
            "0",
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    rec = load_stats(root / "d.npz")
    imgs = torch.stack(
        [
            torch.from_numpy(np.array(Image.open(root / "digits" / f"{i}.png")))
            for i in sorted(range(12), key=str)
        ]
    )
    want = ext(imgs.float().unsqueeze(1) / 255).double().numpy()
    assert rec.meta["extractor"] == "digits-cnn" and rec.n == 12
    np.testing.assert_allclose(rec.mu, want.mean(0), rtol=1e-5, atol=1e-6)
    code, _, err = run(
        ["stats", str(root / "digits"), "-o", str(root / "x.npz"), "--extractor", "nope"], capsys
    )
    assert code == 2 and "unknown extractor 'nope'" in err and "\n" not in err.strip()


def test_cmmd_of_images_equals_cmmd_of_their_embeddings(setup, capsys):
    """Images go through the chosen extractor (CLIP by default; digits here, to stay small)."""
    from fideval.metrics.cmmd import cmmd

    root, _ = setup
    ext = fideval.extractor("digits")
    imgs = torch.stack(
        [torch.from_numpy(np.array(Image.open(root / "digits" / f"{i}.png"))) for i in range(12)]
    )
    emb = ext(imgs.unsqueeze(1)).numpy()
    np.save(root / "emb.npy", emb[6:])
    (root / "half").mkdir(exist_ok=True)
    for i in range(6):
        Image.fromarray(imgs[i].numpy()).save(root / "half" / f"{i}.png")
    code, out, err = run(
        [
            "cmmd",
            str(root / "half"),
            str(root / "emb.npy"),
            "--extractor",
            "digits",
            "--num-workers",
            "0",
            "--no-progress",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads(out)["cmmd"] == pytest.approx(cmmd(emb[:6], emb[6:]), rel=1e-6)
