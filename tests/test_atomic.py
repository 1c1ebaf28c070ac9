"""Atomic writes: file modes follow the umask; orphans of dead writers are swept safely."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from fideval.errors import FidevalError
from fideval.io.atomic import atomic_write, check_writable, is_temp_name, remove_orphans
from fideval.io.statsfile import save_stats
from fideval.stats import GaussianStats
from fideval.train.reference import _save_partial

posix = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes and flock")


@contextlib.contextmanager
def umask(value: int):
    """Set the process umask for the block (tests run single-threaded), then restore it."""
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _stats() -> GaussianStats:
    s = GaussianStats()
    s.update(np.arange(12.0).reshape(4, 3) ** 2)
    return s


@posix
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_mode_open_would_give(tmp_path, mask, expected):
    with umask(mask):
        with open(tmp_path / "plain", "wb") as fh:  # what a normal open() gives
            fh.write(b"x")
        with atomic_write(tmp_path / "a.bin") as fh:
            fh.write(b"data")
        save_stats(tmp_path / "s.npz", _stats())
        _save_partial(tmp_path / "p.partial.npz", _stats(), 4, {"k": 1})
        with atomic_write(tmp_path / "a.bin") as fh:  # replacing gives the same mode
            fh.write(b"new")
    assert _mode(tmp_path / "plain") == expected
    for name in ("a.bin", "s.npz", "p.partial.npz"):
        assert _mode(tmp_path / name) == expected, name
    assert (tmp_path / "a.bin").read_bytes() == b"new"


@pytest.mark.slow
@posix
@pytest.mark.parametrize(("mask", "expected"), [("022", 0o644), ("077", 0o600)])
def test_cli_output_mode_follows_umask_in_a_fresh_process(tmp_path, mask, expected):
    np.save(tmp_path / "f.npy", np.arange(30.0).reshape(10, 3))
    out = tmp_path / f"out{mask}.npz"
    code = (
        f"import os, sys; os.umask(0o{mask}); from fideval.cli import main; "
        f"sys.exit(main(['stats', {str(tmp_path / 'f.npy')!r}, '-o', {str(out)!r}]))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert _mode(out) == expected


@posix
def test_orphan_sweep_spares_live_writers_and_other_files(tmp_path):
    target = tmp_path / "x.npz"
    orphan = tmp_path / ".x.npz.0123456789ab.tmp"  # a dead writer's file: nobody locks it
    old_style = tmp_path / ".x.npz.k2_9zq1a.tmp"  # tempfile.mkstemp's name, older versions
    other = tmp_path / ".x.npz.backup.tmp.keep"
    for p in (orphan, old_style, other):
        p.write_bytes(b"junk")
    with atomic_write(target) as fh:
        (live,) = [p for p in tmp_path.iterdir() if is_temp_name(p.name, "x.npz")]
        assert remove_orphans(target) == []  # the live writer's file is locked: kept
        assert live.exists()
        fh.write(b"complete")
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "x.npz"]
    assert not is_temp_name(".y.npz.0123456789ab.tmp", "x.npz")
    assert not is_temp_name("x.npz.0123456789ab.tmp", "x.npz")


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.bin"]


def test_check_writable(tmp_path):
    (tmp_path / "FILE").write_text("a regular file")
    assert check_writable(tmp_path / "new" / "deeper" / "x.npz") == tmp_path / "new/deeper/x.npz"
    assert not (tmp_path / "new").exists()  # nothing created by the check
    with pytest.raises(FidevalError, match=r"FILE/x\.npz: cannot create folder .*FILE is a file"):
        check_writable(tmp_path / "FILE" / "x.npz")
    with pytest.raises(FidevalError, match=r"FILE/a/x\.npz: cannot create folder"):
        check_writable(tmp_path / "FILE" / "a" / "x.npz")
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(FidevalError, match=r"d\.npz: is a folder"):
        check_writable(tmp_path / "d.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE", "d.npz"]  # probe removed


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs procfs")
def test_check_writable_refuses_proc():
    with pytest.raises(FidevalError, match=r"^/proc/x\.npz: cannot write in folder /proc \("):
        check_writable("/proc/x.npz")
