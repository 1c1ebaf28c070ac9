"""Hostile and damaged inputs: refused early, in one line, without big allocations.

Each class of bad input of docs/refusals.md has a test here: tiny files that claim
huge arrays (peak memory measured in a subprocess), oversized ``.npy`` headers,
truncated members, object dtypes, byte orders (accepted, bit for bit), zero-width
features, missing keys, and control characters in file names.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import fideval
from fideval._arrays import as_float64, check_finite
from fideval._text import shown
from fideval.data.arrayfile import ArrayFile
from fideval.data.features import iter_feature_chunks, open_array, open_features
from fideval.errors import FidevalError
from fideval.io import weights as W
from fideval.io.edm2_pickle import read_edm2_reference, safe_load_pickle
from fideval.io.npyheader import DEFLATE_MAX_RATIO, human_bytes, zip_member_size
from fideval.io.statsfile import load_stats, save_stats
from fideval.stats import GaussianStats

#: Peak memory a refused hostile file may add to the process (it claims ~1 GiB).
PEAK_LIMIT_MIB = 200


# --------------------------------------------------------------------------- helpers


def npy_bytes(shape: tuple[int, ...], descr: str = "<f8", data: bytes = b"") -> bytes:
    """A version-1.0 ``.npy`` header claiming ``shape``/``descr``, followed by ``data``."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape})
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def write_npz(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    """An ``.npz`` whose members are the given raw ``.npy`` bytes."""
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for key, raw in members.items():
            zf.writestr(f"{key}.npy", raw)
    return path


def real_npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    return buf.getvalue()


def peak_in_subprocess(call: str, tmp_path: Path) -> dict:
    """Run ``call`` in a fresh interpreter; its peak-memory growth (MiB) and error text.

    The baseline is taken after the imports, so only what ``call`` allocates counts.
    A marker file records whether anything ran that should not have.
    """
    code = f"""
import json, os, resource
import numpy, torch
from fideval.io import weights as W
from fideval.io.edm2_pickle import read_edm2_reference, safe_load_pickle
os.chdir({str(tmp_path)!r})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    {call}
    msg = "no error"
except BaseException as exc:
    msg = type(exc).__name__ + ": " + str(exc)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"mib": (peak - base) / 1024.0, "msg": msg}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- shown()


def test_shown_escapes_control_characters():
    assert shown("a\x1b[31mb") == "a\\x1b[31mb"
    assert shown("line\nbreak\r\t\x00\x7f") == "line\\x0abreak\\x0d\\x09\\x00\\x7f"
    assert shown(Path("/tmp/é ü/x.npz")) == "/tmp/é ü/x.npz"  # letters stay
    assert shown(b"caf\xe9\x1b.npz") == "caf\\xe9\\x1b.npz"  # undecodable byte, ESC
    assert shown("\x9b31m") == "\\x9b31m"  # C1 CSI
    assert shown(3) == "3"
    for c in range(0x20):
        assert chr(c) not in shown(f"x{chr(c)}y")


# --------------------------------------------------------------------------- tiny files, huge claims

_ELEMENTS = 2**27  # 128 Mi elements: 1 GiB of object pointers, 1 GiB of float64


def _edm2_object_reconstruct() -> bytes:
    """~100 bytes: ``_reconstruct(ndarray, (2**27,), dtype('O'))``, then ``posix.system``."""
    return (
        b"\x80\x02}X\x03\x00\x00\x00fid"
        b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        + b"J"
        + struct.pack("<i", _ELEMENTS)
        + b"\x85cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R\x87R"
        + b"s"
        + b"cposix\nsystem\nX\x0c\x00\x00\x00touch marker\x85R0."
    )


def _edm2_state_object_array() -> bytes:
    """A protocol-2 object array whose BUILD state claims 2**27 items."""
    return (
        b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        b"K\x00\x85C\x01b\x87R"
        b"(K\x01J" + struct.pack("<i", _ELEMENTS) + b"\x85"
        b"cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R"
        b"\x89]tb."
    )


def _bytearray_bomb() -> bytes:
    """``bytearray(2**30)``: 1 GiB of zeros from a 40-byte pickle."""
    return b"\x80\x02c__builtin__\nbytearray\nJ" + struct.pack("<i", 2**30) + b"\x85R."


def _ndarray_call() -> bytes:
    """``numpy.ndarray((2**27,), 'O')`` called directly."""
    return (
        b"\x80\x02cnumpy\nndarray\nJ"
        + struct.pack("<i", _ELEMENTS)
        + b"\x85X\x01\x00\x00\x00O\x86R."
    )


@pytest.mark.parametrize(
    ("payload", "expect"),
    [
        (_edm2_object_reconstruct, "claims 134217728 elements"),
        (_edm2_state_object_array, "Python objects (dtype object)"),
        (_bytearray_bomb, "bytearray(1073741824)"),
        (_ndarray_call, "calls numpy.ndarray(...) directly"),
    ],
)
def test_tiny_pickle_allocates_nothing_and_runs_nothing(tmp_path, payload, expect):
    path = tmp_path / "img512.pkl"
    path.write_bytes(payload())
    assert path.stat().st_size < 200
    got = peak_in_subprocess("read_edm2_reference('img512.pkl')", tmp_path)
    assert got["msg"].startswith("FidevalError: img512.pkl: "), got
    assert expect in got["msg"], got
    assert got["mib"] < PEAK_LIMIT_MIB, got
    assert not (tmp_path / "marker").exists()


def test_pickle_length_beyond_the_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "ref.pkl"
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc.")
    with pytest.raises(FidevalError, match=r"ref\.pkl: not a readable pickle .*1099511627776"):
        safe_load_pickle(path)


def test_pickled_object_arrays_are_refused(tmp_path):
    path = tmp_path / "ref.pkl"
    with open(path, "wb") as f:
        pickle.dump({"fid": {"mu": np.array([1, "a"], dtype=object), "sigma": np.eye(2)}}, f)
    with pytest.raises(FidevalError, match=r"ref\.pkl: holds an array of Python objects"):
        read_edm2_reference(path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickled_fortran_and_big_endian_arrays_round_trip(tmp_path, protocol):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 3))
    sigma = np.asfortranarray(np.cov(x, rowvar=False))
    ref = {"num_images": np.int64(20), "fid": {"mu": x.mean(0).astype(">f8"), "sigma": sigma}}
    path = tmp_path / "ref.pkl"
    with open(path, "wb") as f:
        pickle.dump(ref, f, protocol=protocol)
    got = read_edm2_reference(path)
    mu, sig = got.mu_sigma("fid")
    assert got.num_images == 20
    assert mu.dtype == np.float64 and mu.dtype.isnative
    assert mu.tobytes() == x.mean(0).tobytes() and np.array_equal(sig, sigma)


def _torchscript_with_storage_claim(path: Path, numel: int) -> Path:
    """A small TorchScript archive whose data.pkl claims ``numel`` float32 elements."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = tmp = path.with_suffix(".orig")
        torch.jit.trace(torch.nn.Linear(2, 1, bias=False), torch.zeros(1, 2)).save(str(src))
    with zipfile.ZipFile(tmp) as zf:
        names = zf.namelist()
        root = names[0].split("/")[0]
        pkl = zf.read(f"{root}/data.pkl")
        data = zf.read(f"{root}/data/0")
    ops = list(pickletools.genops(pkl))
    at = next(i for i, (op, arg, _) in enumerate(ops) if arg == "cpu")
    op, _, pos = next(o for o in ops[at + 1 :] if o[0].name.startswith("BININT"))
    size = {"BININT1": 2, "BININT2": 3, "BININT": 5}[op.name]
    pkl = pkl[:pos] + b"J" + struct.pack("<i", numel) + pkl[pos + size :]
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("m/data.pkl", pkl)
        out.writestr("m/data/0", data)
        out.writestr("m/byteorder", "little")
    tmp.unlink()
    return path


def test_tiny_torchscript_claiming_a_huge_storage_allocates_nothing(tmp_path):
    path = _torchscript_with_storage_claim(tmp_path / "clip.pt", 2**28)
    assert path.stat().st_size < 1000
    got = peak_in_subprocess("W.read_torchscript_tensors('clip.pt')", tmp_path)
    assert got["msg"].startswith("FidevalError: clip.pt: tensor data m/data/0"), got
    assert "claims 268435456 elements of torch.float32 = 1.1 GB" in got["msg"], got
    assert "member holds 8 B" in got["msg"], got
    assert got["mib"] < PEAK_LIMIT_MIB, got


def test_torchscript_storage_of_the_right_size_still_reads(tmp_path):
    path = _torchscript_with_storage_claim(tmp_path / "ok.pt", 2)
    got = W.read_torchscript_tensors(path)
    assert got["weight"].shape == (1, 2) and got["weight"].dtype == torch.float32


# --------------------------------------------------------------------------- oversized .npy headers


def test_stats_sigma_claiming_terabytes_is_one_line(tmp_path):
    path = write_npz(
        tmp_path / "stats.npz",
        {
            "mu": real_npy(np.zeros(3)),
            "sigma": npy_bytes((1_000_000, 1_000_000), data=b"\0" * 1200),
        },
    )
    with pytest.raises(FidevalError) as err:
        load_stats(path)
    assert str(err.value) == (
        f"{path}: key 'sigma' claims shape (1000000, 1000000) float64 = 8.0 TB but the member "
        "holds 1.2 KB: truncated or damaged (expected 8000000000000 bytes of array data)"
    )


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_every_npz_loader_checks_the_claim(tmp_path, method):
    raw = npy_bytes((100_000, 100_000), "<f4", b"\0" * 64)
    path = write_npz(tmp_path / "feats.npz", {"arr_0": raw}, method)
    claim = r"feats\.npz: key 'arr_0' claims shape \(100000, 100000\) float32 = 40\.0 GB"
    with pytest.raises(FidevalError, match=claim):
        open_array(path)
    with pytest.raises(FidevalError, match=claim):
        ArrayFile(path)
    with pytest.raises(FidevalError, match=claim):
        fideval.streaming.resolve_source(path)


def test_npy_file_claiming_more_than_the_file(tmp_path):
    path = tmp_path / "feats.npy"
    path.write_bytes(npy_bytes((10**9, 2048), "<f4", b"\0" * 100))
    with pytest.raises(FidevalError) as err:
        open_features(path)
    msg = str(err.value)
    assert msg.startswith(f"{path} claims shape (1000000000, 2048) float32 = 8.2 TB")
    assert "but the file holds 100 B" in msg


def test_zip_directory_claims_are_bounded():
    info = zipfile.ZipInfo("sigma.npy")
    info.compress_type = zipfile.ZIP_DEFLATED
    info.compress_size = 100
    info.file_size = 100 * DEFLATE_MAX_RATIO + 10**6
    with pytest.raises(FidevalError, match="more than deflate can produce"):
        zip_member_size(info, 10_000, "s.npz: key 'sigma'")
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = info.compress_size = 5000
    with pytest.raises(FidevalError, match="truncated or damaged"):
        zip_member_size(info, 1000, "s.npz: key 'sigma'")
    assert human_bytes(999) == "999 B" and human_bytes(1234) == "1.2 KB"


# --------------------------------------------------------------------------- truncated members


def test_truncated_member_is_reported_as_truncated(tmp_path):
    sigma = real_npy(np.eye(100))
    path = write_npz(
        tmp_path / "stats.npz", {"mu": real_npy(np.zeros(100)), "sigma": sigma[: len(sigma) // 2]}
    )
    with pytest.raises(FidevalError) as err:
        load_stats(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: key 'sigma' claims shape (100, 100) float64 = 80.0 KB")
    assert "truncated" in msg and "expected 80000 bytes" in msg
    assert "Python objects" not in msg


def test_corrupt_deflate_stream_is_reported_as_damaged(tmp_path):
    path = tmp_path / "stats.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(path, mu=rng.standard_normal(50), sigma=rng.standard_normal((50, 50)))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("sigma.npy")
    middle = info.header_offset + 30 + len("sigma.npy") + info.compress_size // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(FidevalError, match=r"stats\.npz: key 'sigma' is truncated or damaged"):
        load_stats(path)


# --------------------------------------------------------------------------- object dtypes


def test_object_dtype_npy_features_are_refused(tmp_path):
    path = tmp_path / "feats.npy"
    np.save(path, np.array([[1, "a"], [2, "b"]], dtype=object), allow_pickle=True)
    with pytest.raises(FidevalError, match=r"feats\.npy holds Python objects \(dtype object"):
        open_features(path)


def test_object_dtype_npz_member_is_refused(tmp_path):
    path = tmp_path / "feats.npz"
    np.savez(path, np.array([[1, "a"]], dtype=object))
    with pytest.raises(FidevalError, match=r"feats\.npz: key 'arr_0' holds Python objects"):
        open_array(path)


# --------------------------------------------------------------------------- byte order


def test_big_endian_stats_file_gives_the_same_statistics(tmp_path, rng):
    s = GaussianStats()
    s.update(rng.standard_normal((40, 6)))
    little = save_stats(tmp_path / "little.npz", s, {})
    with np.load(little) as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(
        tmp_path / "big.npz",
        **{**arrays, "mu": arrays["mu"].astype(">f8"), "sigma": arrays["sigma"].astype(">f8")},
    )
    a, b = load_stats(little), load_stats(tmp_path / "big.npz")
    assert b.mu.dtype.isnative and b.sigma.dtype.isnative
    assert a.mu.tobytes() == b.mu.tobytes() and a.sigma.tobytes() == b.sigma.tobytes()
    assert b.to_stats().cov.tobytes() == a.to_stats().cov.tobytes()


def test_big_endian_features_give_the_same_statistics(tmp_path, rng):
    x = rng.standard_normal((30, 5)).astype(np.float32)
    np.save(tmp_path / "little.npy", x)
    np.save(tmp_path / "big.npy", x.astype(">f4"))
    stats = []
    for name in ("little.npy", "big.npy"):
        g = GaussianStats()
        for chunk in iter_feature_chunks(open_features(tmp_path / name), chunk_rows=7):
            assert chunk.dtype.isnative
            g.update(torch.from_numpy(np.array(chunk)))
        stats.append(g)
    assert stats[0].mean.tobytes() == stats[1].mean.tobytes()
    assert stats[0].cov.tobytes() == stats[1].cov.tobytes()
    t_little, _ = as_float64(x, "x")
    t_big, _ = as_float64(x.astype(">f4"), "x")
    assert torch.equal(t_little, t_big)


# --------------------------------------------------------------------------- zero width


def test_zero_width_features_are_refused(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((10, 0), np.float32))
    with pytest.raises(FidevalError) as err:
        open_features(tmp_path / "empty.npy")
    assert str(err.value) == (
        f"{tmp_path / 'empty.npy'}: zero width (shape (10, 0)): no feature dimensions; "
        "expected d ≥ 1"
    )
    for source in (tmp_path / "empty.npy", np.zeros((10, 0))):  # the path and the API
        with pytest.raises(FidevalError, match=r"zero width \(shape \(10, 0\)\)"):
            fideval.fid(source, np.zeros((10, 3)))
    with pytest.raises(FidevalError, match=r"^feats: zero width \(shape \(10, 0\)\)"):
        as_float64(np.zeros((10, 0)), "feats")
    with pytest.raises(FidevalError, match=r"^mu1: zero width"):
        check_finite(torch.zeros(0, dtype=torch.float64), "mu1")


def test_zero_dimension_moments_are_refused(tmp_path):
    np.savez(tmp_path / "d0.npz", mu=np.zeros(0), sigma=np.zeros((0, 0)))
    with pytest.raises(FidevalError, match=r"d0\.npz: key 'mu' has zero width \(d = 0\)"):
        load_stats(tmp_path / "d0.npz")


# --------------------------------------------------------------------------- missing keys


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"mu": np.zeros(3)}, "has 'mu' but no 'sigma'; expected mu (d,) and sigma (d, d)"),
        ({"sigma": np.eye(3)}, "has 'sigma' but no 'mu'; expected mu (d,) and sigma (d, d)"),
        ({"m2": np.zeros(3), "n": np.array(3)}, "has 'm2' but no 's2'; expected m2 (d,)"),
    ],
)
def test_half_a_statistics_file_names_the_missing_key(tmp_path, keys, message):
    path = tmp_path / "stats.npz"
    np.savez(path, **keys)
    for load in (load_stats, fideval.streaming.resolve_source):
        with pytest.raises(FidevalError) as err:
            load(path)
        assert str(err.value).startswith(f"{path}: {message}")


# --------------------------------------------------------------------------- weights messages


class _System:
    def __reduce__(self):
        return (os.system, ("touch marker",))


def test_weights_needing_posix_system_name_the_global(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"w": _System()}, path)
    with pytest.raises(FidevalError) as err:
        W.load_state_dict(path)
    msg = str(err.value)
    assert msg.startswith(f"weights file {path} refuses to load: it needs the global ")
    assert f"the global {os.system.__module__}.system, which is not allowed" in msg
    assert "weights_only=False" not in msg and "`False`" not in msg and "\n" not in msg
    assert not (tmp_path / "marker").exists()


# --------------------------------------------------------------------------- control characters


def _garbage(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04 not really a zip")
    return path


@pytest.mark.parametrize(
    ("suffix", "load"),
    [
        (".npz", load_stats),
        (".npz", open_array),
        (".npy", open_features),
        (".npz", lambda p: ArrayFile(p).array("mu")),
        (".pkl", read_edm2_reference),
        (".pth", W.load_state_dict),
        (".pt", W.read_torchscript_tensors),
    ],
)
def test_control_characters_in_names_are_escaped(tmp_path, suffix, load):
    path = _garbage(tmp_path / f"x\x1b[2J\nfake{suffix}")
    with pytest.raises(FidevalError) as err:
        load(path)
    msg = str(err.value)
    assert "\x1b" not in msg and "\n" not in msg
    assert "x\\x1b[2J\\x0afake" in msg
