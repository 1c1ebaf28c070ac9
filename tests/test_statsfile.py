"""Statistics files: round trips, foreign layouts, provenance guard, error messages."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fideval.errors import FidevalError, IncompatibleStatsError
from fideval.io.atomic import atomic_write
from fideval.io.provenance import check_compatible, make_provenance
from fideval.io.statsfile import load_stats, save_stats
from fideval.stats import GaussianStats, GroupedStats


def make_stats(rng, n=40, d=5):
    s = GaussianStats()
    s.update(rng.standard_normal((n, d)))
    return s


def test_round_trip_and_pytorch_fid_readable(tmp_path, rng):
    s = make_stats(rng)
    meta = make_provenance(extractor="x", dims=5)
    path = save_stats(tmp_path / "a.npz", s, meta)
    rec = load_stats(path)
    assert np.array_equal(rec.mu, s.mean) and np.array_equal(rec.sigma, s.cov)
    assert rec.n == 40 and rec.meta["extractor"] == "x" and rec.layout == "fideval"
    # What pytorch-fid does: np.load(path) then f["mu"][:], f["sigma"][:].
    with np.load(path) as f:
        assert f["mu"].dtype == np.float64 and f["sigma"].shape == (5, 5)
        assert json.loads(str(f["meta"]))["dims"] == 5


def test_grouped_round_trip(tmp_path, rng):
    g = GroupedStats(3)
    g.update(rng.standard_normal((31, 4)))
    rec = load_stats(save_stats(tmp_path / "g.npz", g, {}, save_groups=True))
    assert rec.groups is not None and rec.groups.sizes() == [11, 10, 10]
    assert np.allclose(rec.groups.total().cov, g.total().cov, rtol=1e-13)


def test_reads_foreign_layouts(tmp_path, rng):
    x = rng.standard_normal((30, 4))
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    np.savez(tmp_path / "pf.npz", mu=mu, sigma=sigma)
    np.savez(tmp_path / "ddpm.npz", m2=mu, s2=sigma)
    np.savez(
        tmp_path / "gd.npz",
        arr_0=np.zeros((2, 8, 8, 3), np.uint8),
        mu=mu,
        sigma=sigma,
        mu_s=mu[:2],
        sigma_s=sigma[:2, :2],
    )
    for name, layout in (
        ("pf", "pytorch-fid"),
        ("ddpm", "denoising-diffusion-pytorch"),
        ("gd", "pytorch-fid"),
    ):
        rec = load_stats(tmp_path / f"{name}.npz")
        assert np.array_equal(rec.mu, mu) and rec.n is None and rec.layout == layout


def test_errors_name_file_and_key(tmp_path):
    bad = tmp_path / "asym.npz"
    s = np.eye(3)
    s[0, 2] = 1.0
    np.savez(bad, mu=np.zeros(3), sigma=s)
    with pytest.raises(FidevalError, match=r"asym.npz: key 'sigma' is not symmetric"):
        load_stats(bad)
    np.savez(tmp_path / "rect.npz", mu=np.zeros(3), sigma=np.zeros((3, 2)))
    with pytest.raises(
        FidevalError,
        match=r"rect.npz: key 'sigma': expected a square \(3, 3\) covariance, got shape \(3, 2\)",
    ):
        load_stats(tmp_path / "rect.npz")
    np.savez(tmp_path / "nan.npz", mu=np.array([0, np.nan, 0]), sigma=np.eye(3))
    with pytest.raises(FidevalError, match=r"nan.npz: key 'mu' contains 1 NaN"):
        load_stats(tmp_path / "nan.npz")
    np.savez(tmp_path / "nokeys.npz", foo=np.zeros(3))
    with pytest.raises(FidevalError, match=r"nokeys.npz: no statistics found .*'foo'"):
        load_stats(tmp_path / "nokeys.npz")
    np.savez(tmp_path / "obj.npz", mu=np.array([{"a": 1}], dtype=object), sigma=np.eye(1))
    with pytest.raises(FidevalError, match=r"obj.npz: key 'mu' holds Python objects"):
        load_stats(tmp_path / "obj.npz")


def test_truncated_and_non_npz(tmp_path, rng):
    good = save_stats(tmp_path / "good.npz", make_stats(rng, d=50), {})
    data = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(FidevalError, match=r"trunc.npz: .*(truncated|corrupt)"):
        load_stats(tmp_path / "trunc.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(FidevalError) as err:
        load_stats(tmp_path / "text.npz")
    # One line, naming the file and what was expected; not numpy's pickle advice.
    msg = str(err.value)
    assert "text.npz: not a statistics file" in msg and "'mu' and 'sigma'" in msg
    assert "\n" not in msg and "allow_pickle" not in msg and "pickle.load" not in msg
    with pytest.raises(FidevalError, match=r"missing.npz: no such file"):
        load_stats(tmp_path / "missing.npz")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write(b"new-but-incomplete")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]  # no temp file left behind
    with atomic_write(target) as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new"


def test_provenance_guard():
    a = {"extractor": "inception", "dims": 2048, "weights_sha256": "aa"}
    b = {"extractor": "inception", "dims": 2048, "weights_sha256": "bb"}
    with pytest.raises(IncompatibleStatsError, match=r"weights_sha256: 'aa' \(A\) vs 'bb' \(B\)"):
        check_compatible(a, b)
    warnings = check_compatible(a, b, force=True)
    assert any("forced" in w for w in warnings)
    assert check_compatible(a, dict(a)) == []
    only = check_compatible(a, {})
    assert any("extractor is recorded for A but not for B" in w for w in only)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"meta": np.array("[1, 2]")}, r"key 'meta' holds JSON list; expected an object"),
        ({"n": np.array([3, 4])}, r"key 'n' .* expected a non-negative integer"),
        ({"n": np.array(3.7)}, r"key 'n' .* expected a non-negative integer"),
        ({"n": np.array(-5)}, r"key 'n' .* expected a non-negative integer"),
        ({"mu": np.zeros(3, complex)}, r"key 'mu' has dtype complex128; expected real numbers"),
        ({"mu": np.array(["a", "b", "c"])}, r"key 'mu' has dtype <U1; expected real numbers"),
        (
            {
                "group_n": np.array([2, 2]),
                "group_mu": np.zeros((2, 4)),
                "group_m2": np.zeros((2, 4, 4)),
            },
            r"expected \(2, 3\) and \(2, 3, 3\)",
        ),
    ],
)
def test_malformed_keys_are_clear_errors(tmp_path, arrays, message):
    base = {"mu": np.zeros(3), "sigma": np.eye(3)}
    np.savez(tmp_path / "bad.npz", **{**base, **arrays})
    with pytest.raises(FidevalError, match=message):
        load_stats(tmp_path / "bad.npz")
