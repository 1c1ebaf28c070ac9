"""`fideval stats` and `fideval distance` on features and statistics files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from fideval.cli import main
from fideval.frechet import frechet_from_features
from fideval.io.statsfile import load_stats


@pytest.fixture
def feature_files(tmp_path, rng):
    x = rng.standard_normal((300, 16)).astype(np.float32)
    y = (rng.standard_normal((250, 16)) * 1.2 + 0.3).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path, x, y


def test_stats_then_distance(feature_files, capsys):
    tmp, x, y = feature_files
    assert main(["stats", str(tmp / "x.npy"), "-o", str(tmp / "x.npz")]) == 0
    rec = load_stats(tmp / "x.npz")
    assert rec.n == 300
    assert np.allclose(rec.sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)
    assert rec.meta["input_kind"] == "features" and rec.meta["dims"] == 16
    capsys.readouterr()
    assert main(["distance", str(tmp / "x.npz"), str(tmp / "y.npy"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = frechet_from_features(x, y).value
    assert out["fid"] == pytest.approx(expected, rel=1e-9)
    assert out["n_a"] == 300 and out["n_b"] == 250 and out["dim"] == 16


def test_distance_features_exact_path_when_n_below_d(tmp_path, rng, capsys):
    x, y = rng.standard_normal((20, 64)), rng.standard_normal((30, 64))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    assert main(["distance", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "features-nuclear"
    assert any("rank-deficient" in w for w in out["warnings"])


def test_plain_output(feature_files, capsys):
    tmp, *_ = feature_files
    assert main(["distance", str(tmp / "x.npy"), str(tmp / "y.npy")]) == 0
    assert capsys.readouterr().out.startswith("FID: ")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: np.save(p / "bad.npy", np.zeros(5)), "expected 2-D features"),
        (lambda p: np.save(p / "bad.npy", np.zeros((5, 3, 2))), "expected 2-D features"),
        (lambda p: (p / "bad.npy").write_text("nope"), "not a readable NumPy array"),
    ],
)
def test_user_errors_one_line_exit_2(tmp_path, rng, capsys, setup, message):
    setup(tmp_path)
    np.save(tmp_path / "ok.npy", rng.standard_normal((10, 3)))
    rc = main(["distance", str(tmp_path / "bad.npy"), str(tmp_path / "ok.npy")])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "bad.npy" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_nan_features_error_names_rows(tmp_path, rng, capsys):
    x = rng.standard_normal((10000, 3))
    x[5000, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    rc = main(["stats", str(tmp_path / "nan.npy"), "-o", str(tmp_path / "o.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and "batch 1" in err and "stream rows 5000" in err
    assert not (tmp_path / "o.npz").exists()


def test_dimension_mismatch(tmp_path, rng, capsys):
    np.save(tmp_path / "a.npy", rng.standard_normal((10, 3)))
    np.save(tmp_path / "b.npy", rng.standard_normal((10, 4)))
    assert main(["distance", str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]) == 2
    assert "dimension mismatch" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_no_traceback(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "fideval", "distance", str(tmp_path / "no.npz"), "x.npz"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2
    assert "no.npz: no such file" in r.stderr and "Traceback" not in r.stderr


def test_npz_named_npy_and_bad_flags(tmp_path, rng, capsys):
    with open(tmp_path / "disguised.npy", "wb") as fh:  # np.savez would append ".npz"
        np.savez(fh, a=np.zeros((3, 2)))
    np.save(tmp_path / "ok.npy", rng.standard_normal((10, 2)))
    assert main(["distance", str(tmp_path / "disguised.npy"), str(tmp_path / "ok.npy")]) == 2
    assert "a .npz archive under a .npy name" in capsys.readouterr().err
    for argv in (
        ["kid", "a.npy", "b.npy", "--device", "nonsense"],
        ["estimate", "a.npy", "r.npz", "--batch-size", "0"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    assert "expected a whole number ≥ 1" in capsys.readouterr().err
