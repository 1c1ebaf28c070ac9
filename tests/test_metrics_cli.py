"""CLI subcommands of the companion metrics: JSON keys, seeds, errors naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fideval.cli import main
from fideval.metrics.cmmd import cmmd
from fideval.metrics.inception_score import inception_score
from fideval.metrics.kid import kid
from fideval.metrics.prdc import prdc


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    paths = {}
    arrays = {
        "a": rng.normal(size=(120, 8)).astype(np.float32),
        "b": (rng.normal(size=(110, 8)) + 0.2).astype(np.float32),
        "logits": rng.normal(size=(100, 12)),
        "text": rng.normal(size=(70, 6)),
        "gt": rng.normal(size=(90, 6)),
        "mm": rng.normal(size=(4, 12, 6)),
    }
    arrays["motion"] = arrays["text"] + 0.3 * rng.normal(size=(70, 6))
    for name, arr in arrays.items():
        p = tmp_path / f"{name}.npy"
        np.save(p, arr)
        paths[name] = str(p)
    return paths


def run_json(capsys, argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_kid(files, capsys):
    out = run_json(capsys, ["kid", files["a"], files["b"], "--subsets", "4", "--subset-size", "50"])
    assert {"kid", "kid_std"} <= set(out)
    again = run_json(
        capsys, ["kid", files["a"], files["b"], "--subsets", "4", "--subset-size", "50"]
    )
    assert again == out
    full = run_json(capsys, ["kid", files["a"], files["b"], "--full", "--seed", "3"])
    assert full["kid_std"] == 0.0 and full["subset_size"] == [120, 110]


def test_is(files, capsys):
    out = run_json(capsys, ["is", files["logits"], "--splits", "5"])
    want = inception_score(np.load(files["logits"]), splits=5)
    assert out["is"] == want.value and out["is_std"] == want.std


def test_prdc(files, capsys):
    out = run_json(capsys, ["prdc", files["a"], files["b"], "--k", "3", "--max-samples", "100"])
    want = prdc(np.load(files["a"]), np.load(files["b"]), k=3, max_samples=100).to_dict()
    assert {k: out[k] for k in want} == want
    assert out["n_real"] == 100 and out["k_pr"] == 3


def test_cmmd(files, capsys):
    out = run_json(capsys, ["cmmd", files["a"], files["b"]])
    assert out["cmmd"] == cmmd(np.load(files["a"]), np.load(files["b"]))
    unb = run_json(capsys, ["cmmd", files["a"], files["b"], "--unbiased"])
    assert unb["cmmd"] != out["cmmd"]
    assert run_json(capsys, ["cmmd", files["a"], files["a"]])["cmmd"] == 0.0


def test_motion(files, capsys):
    argv = ["motion", "--text", files["text"], "--motion", files["motion"], "--gt", files["gt"]]
    argv += ["--pool", "16", "--diversity-times", "30"]
    out = run_json(capsys, argv)
    assert {"r_precision", "matching_score", "fid", "diversity"} <= set(out)
    assert len(out["r_precision"]) == 3 and "multimodality" not in out
    out = run_json(capsys, [*argv, "--mm", files["mm"], "--replications", "3", "--shuffle"])
    assert "multimodality" in out
    rep = out["replications"]["diversity"]
    assert len(rep["values"]) == 3 and rep["ci_halfwidth"] > rep["protocol_ci95_halfwidth"]


def test_human_output(files, capsys):
    assert main(["kid", files["a"], files["b"], "--subsets", "2", "--subset-size", "40"]) == 0
    res = kid(np.load(files["a"]), np.load(files["b"]), subsets=2, subset_size=40)
    assert capsys.readouterr().out == (
        f"KID: {res.value:.6g} ± {res.std:.3g} (std over 2 subsets, ddof=0)\n"
    )


def test_errors_name_the_file(files, tmp_path, capsys):
    bad = np.load(files["b"])
    bad[5, 2] = np.nan
    p = tmp_path / "bad.npy"
    np.save(p, bad)
    assert main(["prdc", files["a"], str(p)]) == 2
    err = capsys.readouterr().err
    assert "bad.npy" in err and "rows 5" in err

    np.save(tmp_path / "d4.npy", np.zeros((50, 4)))
    assert main(["cmmd", files["a"], str(tmp_path / "d4.npy")]) == 2
    assert "d4.npy has d=4" in capsys.readouterr().err

    assert main(["kid", files["a"], str(tmp_path / "missing.npy")]) == 2
    assert "missing.npy: no such file" in capsys.readouterr().err

    assert (
        main(
            [
                "motion",
                "--text",
                files["text"],
                "--motion",
                files["motion"],
                "--gt",
                files["gt"],
                "--mm",
                files["a"],
            ]
        )
        == 2
    )
    assert "a.npy" in capsys.readouterr().err


@pytest.mark.slow
def test_image_inputs_for_is_and_kid(tmp_path, capsys):
    """`fideval is` / `fideval kid` on image arrays go through the FID Inception."""
    import json as _json

    import numpy as _np
    import torch

    from fideval.cli import main
    from fideval.features.inception import seeded_random_state_dict

    weights = tmp_path / "w.pth"
    torch.save(seeded_random_state_dict(0), weights)
    rng = _np.random.default_rng(0)
    for name in ("a", "b"):
        _np.save(tmp_path / f"{name}.npy", rng.integers(0, 256, (6, 16, 16, 3), dtype=_np.uint8))
    flags = ["--weights", str(weights), "--num-workers", "0", "--no-progress", "--json"]
    assert main(["is", str(tmp_path / "a.npy"), "--splits", "2", *flags]) == 0
    out = _json.loads(capsys.readouterr().out)
    import fideval

    ext = fideval.extractor("inception", weights=weights, device="cpu")
    imgs = _np.load(tmp_path / "a.npy")
    side = fideval.streaming.collect(imgs, ext, logits=True)
    assert out["classes"] == 1008 and out["n"] == 6
    assert out["is"] == inception_score(side.logits, splits=2).value
    small = fideval.extractor("inception", dims=64, weights=weights, device="cpu")
    assert (
        main(
            [
                "kid",
                str(tmp_path / "a.npy"),
                str(tmp_path / "b.npy"),
                "--full",
                "--dims",
                "64",
                *flags,
            ]
        )
        == 0
    )
    out = _json.loads(capsys.readouterr().out)
    feats = [
        fideval.streaming.collect(
            _np.load(tmp_path / f"{n}.npy"), small, features="required"
        ).features
        for n in ("a", "b")
    ]
    assert out["kid"] == kid(*feats, subsets=1, subset_size=None).value


@pytest.mark.parametrize(
    "flags, param, shown",
    [
        (["--degree", "2.5"], "degree", "2.5"),
        (["--degree", "0"], "degree", "0"),
        (["--gamma", "0"], "gamma", "0"),
        (["--gamma", "-1"], "gamma", "-1"),
        (["--coef0", "-0.5"], "coef0", "-0.5"),
    ],
)
def test_kid_invalid_kernel_is_one_line_exit_2(files, capsys, flags, param, shown):
    status = main(["kid", files["a"], files["b"], "--subsets", "2", "--subset-size", "40", *flags])
    assert status == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("fideval kid: error: KID kernel ")
    assert f"{param} must be" in lines[0] and lines[0].endswith(f"got {shown}")


def test_kid_kernel_flags_are_used_and_recorded(files, capsys):
    base = ["kid", files["a"], files["b"], "--full"]
    default = run_json(capsys, base)
    assert default["kernel"] == {"degree": 3, "gamma": 1 / 8, "coef0": 1.0}
    explicit = run_json(capsys, [*base, "--degree", "3", "--gamma", "0.125", "--coef0", "1"])
    assert explicit == default
    linear = run_json(capsys, [*base, "--degree", "1", "--gamma", "1", "--coef0", "0"])
    # degree 1, γ = 1, c = 0: the unbiased MMD² of the linear kernel is ‖x̄ − ȳ‖² minus
    # the diagonal corrections; compare with the closed form of the U-statistic.
    a, b = np.load(files["a"]).astype(np.float64), np.load(files["b"]).astype(np.float64)
    m, n = len(a), len(b)
    sa, sb = a.sum(0), b.sum(0)
    uxx = (sa @ sa - (a * a).sum()) / (m * (m - 1))
    uyy = (sb @ sb - (b * b).sum()) / (n * (n - 1))
    want = uxx + uyy - 2 * (sa @ sb) / (m * n)
    assert linear["kid"] == pytest.approx(want, rel=1e-10)
    assert linear["kernel"] == {"degree": 1, "gamma": 1.0, "coef0": 0.0}


@pytest.mark.slow
def test_is_of_images_defaults_to_logits_without_bias(tmp_path, capsys):
    """`fideval is IMAGES` scores pool3·Wᵀ (no fc bias) and records it; the biased
    variant is `--logits-with-bias`. Same batches and the same network on both sides,
    so the CLI equals the library exactly."""
    import warnings

    import torch

    import fideval
    from fideval.features.inception import seeded_random_state_dict

    sd = seeded_random_state_dict(2)
    sd["fc.weight"] = sd["fc.weight"] * 50  # spread the softmax: the bias then matters
    sd["fc.bias"] = sd["fc.bias"] * 30
    weights = tmp_path / "w.pth"
    torch.save(sd, weights)
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "imgs.npy", images)
    argv = ["is", str(tmp_path / "imgs.npy"), "--splits", "2", "--weights", str(weights)]
    argv += ["--num-workers", "0", "--no-progress", "--batch-size", "6", "--device", "cpu"]
    plain = run_json(capsys, argv)
    biased = run_json(capsys, [*argv, "--logits-with-bias"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = fideval.extractor("inception", weights=weights, device="cpu")
        ex_b = fideval.extractor("inception", weights=weights, device="cpu", logits_bias=True)
    kw = {"is_options": {"splits": 2}, "batch_size": 6, "num_workers": 0}
    lib = fideval.evaluate(images, None, ["is"], extractor=ex, **kw)
    lib_b = fideval.evaluate(images, None, ["is"], extractor=ex_b, **kw)
    assert plain["logits_bias"] is False and biased["logits_bias"] is True
    assert "no bias" in plain["logits"] and "+ b" in biased["logits"]
    assert plain["is"] == lib["is"] and plain["is_std"] == lib["is_std"]
    assert biased["is"] == lib_b["is"] and biased["is_std"] == lib_b["is_std"]
    assert plain["is"] != biased["is"]  # the flag reaches the network
    assert plain["n"] == 6 and plain["classes"] == 1008

    assert main(["is", str(tmp_path / "imgs.npy"), *argv[2:]]) == 0
    assert "no fc bias" in capsys.readouterr().out


def test_is_logits_with_bias_flag_needs_images(files, capsys):
    assert main(["is", files["logits"], "--logits-with-bias"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "logits.npy: --logits-with-bias applies to images only" in err[0]
