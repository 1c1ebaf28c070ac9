"""EDM2 reference pickles: read safely, layout checked, any other global refused."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from fideval.errors import FidevalError
from fideval.io.edm2_pickle import (
    read_edm2_reference,
    safe_load_npy_object,
    safe_load_pickle,
)


def _reference(rng: np.random.Generator, d_fid: int = 16, d_dino: int = 8) -> dict:
    def stats(d):
        f = rng.standard_normal((50, d))
        return {"mu": f.mean(0), "sigma": np.cov(f, rowvar=False)}

    return {"num_images": 50, "fid": stats(d_fid), "fd_dinov2": stats(d_dino)}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_reads_what_edm2_writes(tmp_path, protocol):
    ref = _reference(np.random.default_rng(0))
    path = tmp_path / "img512.pkl"
    with open(path, "wb") as f:
        pickle.dump(ref, f, protocol=protocol)  # what calculate_metrics.py ref does
    got = read_edm2_reference(path)
    assert got.num_images == 50
    assert sorted(got.stats) == ["fd_dinov2", "fid"]
    for key in ("fid", "fd_dinov2"):
        mu, sigma = got.mu_sigma(key)
        assert mu.dtype == np.float64 and sigma.dtype == np.float64
        np.testing.assert_array_equal(mu, ref[key]["mu"])
        np.testing.assert_array_equal(sigma, ref[key]["sigma"])
    with pytest.raises(FidevalError, match="no statistics for 'kid'"):
        got.mu_sigma("kid")


def test_numpy_scalars_and_float32_are_accepted(tmp_path):
    ref = _reference(np.random.default_rng(1))
    ref["num_images"] = np.int64(50)
    ref["fid"]["mu"] = ref["fid"]["mu"].astype(np.float32)
    path = tmp_path / "ref.pkl"
    path.write_bytes(pickle.dumps(ref))
    got = read_edm2_reference(path)
    assert got.num_images == 50 and got.stats["fid"][0].dtype == np.float64


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class Custom:
    pass


@pytest.mark.parametrize(
    "payload,global_name",
    [
        ({"num_images": 1, "fid": Evil()}, "system"),  # posix.system / nt.system
        ({"num_images": 1, "fid": Custom()}, "Custom"),
        ({"x": eval}, "eval"),
    ],
)
def test_any_other_global_is_refused_before_it_runs(tmp_path, payload, global_name):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(FidevalError) as err:
        read_edm2_reference(path)
    msg = str(err.value)
    assert str(path) in msg and global_name in msg and "refused" in msg
    assert "\n" not in msg


CALLS: list[str] = []


def _record(what: str) -> str:
    CALLS.append(what)
    return what


class Recorder:
    def __reduce__(self):
        return (_record, ("ran",))


def test_refused_global_does_not_execute(tmp_path):
    data = pickle.dumps({"fid": Recorder()})
    CALLS.clear()
    pickle.loads(data)  # the payload is real: plain unpickling calls it
    assert CALLS == ["ran"]
    CALLS.clear()
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(FidevalError, match="_record"):
        safe_load_pickle(path)
    assert CALLS == []


@pytest.mark.parametrize(
    "data,match",
    [
        ([1, 2], "holds a list"),
        ({"num_images": 3}, "no statistics found"),
        ({"fid": {"mu": np.zeros(3)}}, "'fid'.*mu and sigma"),
        ({"fid": {"mu": np.zeros(3), "sigma": np.zeros((2, 2))}}, r"\(3,\).*\(2, 2\)"),
        ({"fid": {"mu": np.array([np.nan]), "sigma": np.ones((1, 1))}}, "non-finite"),
        (
            {"num_images": "many", "fid": {"mu": np.zeros(1), "sigma": np.ones((1, 1))}},
            "num_images",
        ),
    ],
)
def test_layout_errors_name_file_and_key(tmp_path, data, match):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(FidevalError, match=match) as err:
        read_edm2_reference(path)
    assert str(path) in str(err.value)


def test_not_a_pickle(tmp_path):
    path = tmp_path / "noise.pkl"
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(FidevalError, match="not a readable pickle"):
        read_edm2_reference(path)
    with pytest.raises(FidevalError, match="cannot read"):
        read_edm2_reference(tmp_path / "missing.pkl")


def test_npy_object_of_a_state_dict(tmp_path):
    """The original CMMD's weights cache: np.save of an OrderedDict of arrays."""
    sd = OrderedDict(
        [("visual.proj", np.ones((4, 2), np.float16)), ("input_resolution", np.array(336))]
    )
    path = tmp_path / "vit.npy"
    np.save(path, sd, allow_pickle=True)
    got = safe_load_npy_object(path)
    assert isinstance(got, dict) and list(got) == list(sd)
    assert got["visual.proj"].dtype == np.float16
    np.testing.assert_array_equal(got["visual.proj"], sd["visual.proj"])
    assert int(got["input_resolution"]) == 336
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(3))
    with pytest.raises(FidevalError, match="dtype float64"):
        safe_load_npy_object(plain)
    evil = tmp_path / "evil.npy"
    np.save(evil, np.array([Custom()], dtype=object), allow_pickle=True)
    with pytest.raises(FidevalError, match="Custom"):
        safe_load_npy_object(evil)


def test_edm2_reference_as_a_statistics_source(tmp_path, capsys):
    """`img512.pkl#fd_dinov2` is a statistics side anywhere a .npz is (CLI and Python)."""
    import json
    import pickle

    import fideval
    from fideval.cli import main

    rng = np.random.default_rng(0)
    feats = {k: rng.standard_normal((300, d)) for k, d in (("fid", 12), ("fd_dinov2", 8))}
    ref = {"num_images": 300}
    for k, f in feats.items():
        ref[k] = {"mu": f.mean(0), "sigma": np.cov(f, rowvar=False)}
    path = tmp_path / "img512.pkl"
    path.write_bytes(pickle.dumps(ref))
    gen = rng.standard_normal((200, 8)) + 0.3
    np.save(tmp_path / "gen.npy", gen)
    r = fideval.fid(tmp_path / "gen.npy", f"{path}#fd_dinov2")
    want = fideval.frechet_details(
        gen.mean(0),
        np.cov(gen, rowvar=False),
        ref["fd_dinov2"]["mu"],
        ref["fd_dinov2"]["sigma"],
        n1=200,
        n2=300,
    ).value
    assert r.value == pytest.approx(want, rel=1e-10) and r.n2 == 300
    assert main(["distance", str(tmp_path / "gen.npy"), f"{path}#fd_dinov2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fid"] == pytest.approx(want, rel=1e-10)
    with pytest.raises(FidevalError, match=r"name the one to use, e\.g\. .*img512\.pkl#fd_dinov2"):
        fideval.load_stats(path)
    with pytest.raises(FidevalError, match="no statistics for 'nope'"):
        fideval.load_stats(f"{path}#nope")
    rec = fideval.load_stats(f"{path}#fid")
    assert rec.meta["extractor"] == "inception-v3-fid" and rec.dim == 12 and rec.n == 300
