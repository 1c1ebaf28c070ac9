"""The CLI checks what it can before the work, and speaks in single lines.

* output paths (``.npz``, a folder that exists or can be made, writable), empty image
  folders, the weights and a statistics file's provenance and d against the image
  side's extractor are all refused with one line and exit 2 *before* any image is read;
* every warning is one line ``fideval: warning: <message>`` on stderr — the library's
  ``warnings.warn`` and each result's own ``warnings`` (also with ``--json``);
* unreadable weights and text files named ``.npz`` get one plain line.

"Before the work" is checked by making the work itself fail loudly: the functions that
would read images or stream features are replaced with ones that raise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import fideval.cli.stats as cli_stats
import fideval.data.images as images_mod
import fideval.features.registry as registry_mod
import fideval.streaming as streaming_mod
from fideval.errors import FidevalError
from fideval.io.statsfile import save_stats
from fideval.stats import GaussianStats
from helpers import cli, one_error_line

PREFIX = "fideval: warning: "


class WorkStarted(AssertionError):
    """Raised by the stand-ins below: the work began before the checks were done."""


def _forbid(*_args, **_kwargs):
    raise WorkStarted("the work started before the checks")


@pytest.fixture
def feats(tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, np.random.default_rng(0).standard_normal((40, 5)))
    return path


@pytest.fixture
def no_streaming(monkeypatch):
    """Any statistics computation in ``fideval stats`` fails: checks must come first."""
    monkeypatch.setattr(cli_stats, "statistics", _forbid)


@pytest.fixture
def no_images(monkeypatch):
    """Reading any image, or building any network, fails."""
    monkeypatch.setattr(images_mod.ImageStream, "__iter__", _forbid)
    monkeypatch.setattr(registry_mod, "extractor", _forbid)


@pytest.fixture
def no_image_reading(monkeypatch):
    """Reading any image fails (the network may be built: its weights are checked)."""
    monkeypatch.setattr(images_mod.ImageStream, "__iter__", _forbid)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from fideval.features.inception import seeded_random_state_dict

    path = tmp_path_factory.mktemp("weights") / "random-inception.pth"
    torch.save(seeded_random_state_dict(7), path)
    return path


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def _image_flags(weights) -> list[str]:
    return ["--weights", str(weights), "--num-workers", "0", "--no-progress", "--device", "cpu"]


# --------------------------------------------------------------------------- output paths


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("out/noext", "out/noext: statistics files must end in .npz"),
        ("stats.json", "stats.json: statistics files must end in .npz"),
        ("FILE/x.npz", "FILE/x.npz: cannot create folder {tmp}/FILE: {tmp}/FILE is a file"),
        (
            "FILE/a/b/x.npz",
            "FILE/a/b/x.npz: cannot create folder {tmp}/FILE/a/b: {tmp}/FILE is a file",
        ),
        ("isdir.npz", "isdir.npz: is a folder; expected a file name"),
    ],
)
def test_stats_output_refused_before_the_work(
    tmp_path, feats, capsys, no_streaming, output, message
):
    (tmp_path / "FILE").write_text("a regular file")
    (tmp_path / "isdir.npz").mkdir()
    code, out, err = cli(capsys, "stats", feats, "-o", tmp_path / output)
    assert code == 2 and out == ""
    line = one_error_line(err, "stats")
    assert line.endswith(message.format(tmp=tmp_path)) or message.format(tmp=tmp_path) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE", "f.npy", "isdir.npz"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs procfs")
def test_stats_output_in_proc_refused_before_the_work(feats, capsys, no_streaming):
    code, _, err = cli(capsys, "stats", feats, "-o", "/proc/x.npz")
    assert code == 2
    assert "/proc/x.npz: cannot write in folder /proc (" in one_error_line(err, "stats")


def test_stats_output_folder_is_created(tmp_path, feats, capsys):
    out = tmp_path / "new" / "deeper" / "s.npz"
    assert cli(capsys, "stats", feats, "-o", out)[0] == 0
    assert out.is_file()


@pytest.mark.slow
def test_console_script_bad_output_is_one_line_exit_2(tmp_path, feats):
    (tmp_path / "FILE").write_text("x")
    for output in (tmp_path / "FILE" / "x.npz", "/proc/x.npz"):
        if str(output).startswith("/proc") and not os.path.isdir("/proc/self"):
            continue
        r = subprocess.run(
            [sys.executable, "-m", "fideval", "stats", str(feats), "-o", str(output)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
        assert r.stderr.startswith(f"fideval stats: error: {output}: cannot ")


def test_demo_output_folder_checked_before_training(tmp_path, capsys, monkeypatch):
    import fideval.train.demo as demo_mod

    monkeypatch.setattr(demo_mod, "run_demo", _forbid)
    (tmp_path / "FILE").write_text("x")
    code, _, err = cli(capsys, "demo", "--out", tmp_path / "FILE", "--quick")
    assert code == 2
    assert "FILE: exists and is not a folder" in one_error_line(err, "demo")
    code, _, err = cli(capsys, "demo", "--out", tmp_path / "FILE" / "sub", "--quick")
    assert code == 2 and "is a file" in one_error_line(err, "demo")


# --------------------------------------------------------------------------- empty folders


def test_stats_of_empty_folder_refused_at_once(tmp_path, capsys, no_images):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here")
    (empty / "sub" / ".hidden.png").write_bytes(b"")
    code, _, err = cli(capsys, "stats", empty, "-o", tmp_path / "s.npz", "--weights", "nope")
    assert code == 2
    assert f"no image files in folder {empty} (searched recursively for " in one_error_line(
        err, "stats"
    )


@pytest.mark.parametrize("empty_side", [0, 1])
def test_fid_with_an_empty_folder_refused_before_extraction(
    tmp_path, folder, capsys, no_images, empty_side
):
    empty = tmp_path / "empty"
    empty.mkdir()
    sides = [folder, folder]
    sides[empty_side] = empty
    code, _, err = cli(capsys, "fid", *sides, "--weights", "nope")
    assert code == 2
    assert f"no image files in folder {empty}" in one_error_line(err, "fid")


@pytest.mark.parametrize("command", ["kid", "prdc"])
def test_sample_metrics_check_both_sides_before_extracting(
    tmp_path, folder, feats, capsys, no_images, command
):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(capsys, command, folder, empty, "--weights", "nope")
    assert code == 2 and f"no image files in folder {empty}" in one_error_line(err, command)
    ref = tmp_path / "ref.npz"
    _stats_file(ref, 5, {})
    code, _, err = cli(capsys, command, folder, ref, "--weights", "nope")
    assert code == 2
    assert f"{ref}: a statistics file holds only mean and covariance" in one_error_line(
        err, command
    )


# --------------------------------------------------------------------------- statistics vs images


@pytest.fixture(scope="module")
def inception_meta(weights):
    import fideval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random weights are not the official file
        return fideval.extractor("inception", dims=64, weights=weights, device="cpu").provenance()


def _stats_file(path, d: int, meta: dict) -> None:
    s = GaussianStats()
    s.update(np.random.default_rng(2).standard_normal((3 * d, d)))
    save_stats(path, s, {**meta, "dims": d})


@pytest.mark.parametrize(
    ("change", "flags", "message"),
    [
        ({"profile": "clean"}, [], "profile: 'clean' ({a}) vs 'pytorch-fid' ({b})"),
        ({}, ["--profile", "clean"], "profile: 'pytorch-fid' ({a}) vs 'clean' ({b})"),
        ({"weights_sha256": "0" * 64}, [], "weights_sha256: '" + "0" * 64 + "' ({a}) vs"),
        ({"extractor": "dinov2-vitl14"}, [], "extractor: 'dinov2-vitl14' ({a}) vs"),
    ],
)
def test_fid_stats_provenance_checked_before_extracting_images(
    tmp_path, folder, weights, inception_meta, capsys, no_image_reading, change, flags, message
):
    ref = tmp_path / "ref.npz"
    _stats_file(ref, 64, {**inception_meta, **change})
    code, _, err = cli(capsys, "fid", ref, folder, "--dims", "64", *flags, *_image_flags(weights))
    assert code == 2
    line = err.splitlines()[-1]
    assert line.startswith("fideval fid: error: statistics were made by different pipelines")
    assert message.format(a=ref, b=folder) in line


def test_fid_stats_dims_checked_before_extracting_images(
    tmp_path, folder, weights, inception_meta, capsys, no_image_reading
):
    ref = tmp_path / "ref.npz"
    _stats_file(ref, 8, inception_meta)
    code, _, err = cli(capsys, "fid", folder, ref, "--dims", "64", *_image_flags(weights))
    assert code == 2
    assert err.splitlines()[-1] == (
        f"fideval fid: error: dimension mismatch: {folder} has d=64 (made by extractor "
        f"'inception-v3-fid'), {ref} has d=8 (made by extractor 'inception-v3-fid'); use the "
        "same extractor for both sides (e.g. extractor 'inception')"
    )


def test_distance_dims_checked_before_streaming_features(tmp_path, feats, capsys, monkeypatch):
    monkeypatch.setattr(streaming_mod, "stream", _forbid)
    ref = tmp_path / "ref.npz"
    _stats_file(ref, 7, {})
    code, _, err = cli(capsys, "distance", ref, feats)
    assert code == 2
    assert one_error_line(err, "distance").endswith(
        f"dimension mismatch: {ref} has d=7, {feats} has d=5"
    )


# --------------------------------------------------------------------------- warnings


def test_library_warnings_print_as_one_plain_line(feats, tmp_path, capsys, monkeypatch):
    real = cli_stats.statistics

    def warning_stats(source, extractor=None, **kw):
        warnings.warn("first line\nsecond line", UserWarning, stacklevel=2)
        warnings.warn("a runtime matter", RuntimeWarning, stacklevel=1)
        return real(source, extractor, **kw)

    monkeypatch.setattr(cli_stats, "statistics", warning_stats)
    before = warnings.showwarning
    code, _, err = cli(capsys, "stats", feats, "-o", tmp_path / "s.npz")
    assert code == 0
    assert err.splitlines() == [PREFIX + "first line second line", PREFIX + "a runtime matter"]
    assert warnings.showwarning is before  # the hook is removed afterwards


@pytest.mark.slow
def test_weights_warning_is_one_plain_line_in_a_console_run(tmp_path, weights, folder):
    """The real case: an unofficial weights file, through `python -m fideval`."""
    ref = tmp_path / "ref.npz"
    _stats_file(ref, 8, {})
    argv = ["fid", str(ref), str(folder), "--dims", "64", *_image_flags(weights)]
    r = subprocess.run(
        [sys.executable, "-m", "fideval", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = r.stderr.splitlines()
    assert r.returncode == 2, r.stderr
    assert lines[0].startswith(PREFIX + f"weights file {weights} has SHA-256 "), r.stderr
    assert lines[1].startswith("fideval fid: error: dimension mismatch"), r.stderr
    assert len(lines) == 2 and "UserWarning" not in r.stderr and ".py:" not in r.stderr


@pytest.mark.parametrize("as_json", [False, True])
def test_distance_result_warnings_on_stderr(tmp_path, capsys, as_json):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "x.npy", rng.standard_normal((20, 64)))
    np.save(tmp_path / "y.npy", rng.standard_normal((30, 64)))
    code, out, err = cli(
        capsys, "distance", tmp_path / "x.npy", tmp_path / "y.npy", *(["--json"] if as_json else [])
    )
    assert code == 0
    lines = err.splitlines()
    assert lines and all(ln.startswith(PREFIX) for ln in lines), err
    assert any("N=20 ≤ d=64" in ln for ln in lines)
    if as_json:
        res = json.loads(out)
        assert [PREFIX + w for w in res["warnings"]] == lines
    else:
        assert out.startswith("FID: ")


@pytest.mark.parametrize("as_json", [False, True])
def test_estimate_warnings_on_stderr(tmp_path, capsys, as_json):
    rng = np.random.default_rng(4)
    np.save(tmp_path / "g.npy", rng.standard_normal((600, 4)))
    ref = tmp_path / "ref.npz"
    _stats_file(ref, 4, {})
    code, out, err = cli(
        capsys,
        "estimate",
        tmp_path / "g.npy",
        ref,
        "--groups",
        "4",
        "--orders",
        "1",
        *(["--json"] if as_json else []),
    )
    assert code == 0
    lines = err.splitlines()
    assert any(ln.startswith(PREFIX + "only K=4 groups") for ln in lines), err
    assert all(ln.startswith(PREFIX) for ln in lines)
    if as_json:
        assert [PREFIX + w for w in json.loads(out)["warnings"]] == lines


def _motion_files(tmp_path, n: int, d: int, n_gt: int) -> list[str]:
    rng = np.random.default_rng(5)
    for name, rows in (("text", n), ("motion", n), ("gt", n_gt)):
        np.save(tmp_path / f"{name}.npy", rng.standard_normal((rows, d)))
    return [f"--{k}={tmp_path / f'{k}.npy'}" for k in ("text", "motion", "gt")]


@pytest.mark.parametrize("replications", [None, 2])
def test_motion_prints_the_suites_warnings(tmp_path, capsys, monkeypatch, replications):
    import fideval.cli.motion as cli_motion

    real = cli_motion.motion_suite

    def suite(*args, **kw):
        return {**real(*args, **kw), "warnings": ["FID: N=40 ≤ d=8 is rank-deficient"]}

    monkeypatch.setattr(cli_motion, "motion_suite", suite)
    flags = _motion_files(tmp_path, 40, 8, 50)
    reps = [] if replications is None else ["--replications", str(replications)]
    code, out, err = cli(capsys, "motion", *flags, "--pool", "8", "--diversity-times", "10", *reps)
    assert code == 0 and "fid:" in out
    assert err.splitlines() == [PREFIX + "FID: N=40 ≤ d=8 is rank-deficient"]
    code, out, err = cli(
        capsys, "motion", *flags, "--pool", "8", "--diversity-times", "10", *reps, "--json"
    )
    assert json.loads(out)["warnings"] == ["FID: N=40 ≤ d=8 is rank-deficient"]
    assert err.splitlines() == [PREFIX + "FID: N=40 ≤ d=8 is rank-deficient"]


def test_motion_with_n_below_d_warns(tmp_path, capsys):
    """End to end: N = 256 < d = 512 must not print an FID silently.

    Needs the motion suite's ``"warnings"`` key (fideval.metrics.motion).
    """
    flags = _motion_files(tmp_path, 256, 512, 600)
    code, out, err = cli(capsys, "motion", *flags, "--diversity-times", "50")
    assert code == 0 and "fid:" in out
    lines = err.splitlines()
    assert lines and all(ln.startswith(PREFIX) for ln in lines), err
    assert any("N=256 ≤ d=512" in ln for ln in lines), err


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize("command", ["stats", "fid"])
def test_bad_weights_file_is_one_line(tmp_path, folder, capsys, command, no_image_reading):
    bad = tmp_path / "bad.pth"
    bad.write_text("this is not a torch file\n")
    argv = (
        [command, folder, "-o", tmp_path / "s.npz"]
        if command == "stats"
        else [command, folder, folder]
    )
    code, _, err = cli(capsys, *argv, *_image_flags(bad))
    assert code == 2
    lines = err.splitlines()
    errors = [ln for ln in lines if ln.startswith(f"fideval {command}: error: ")]
    assert len(errors) == 1 and str(bad) in errors[0], err
    assert all(ln.startswith(("fideval: warning: ", f"fideval {command}: error: ")) for ln in lines)
    assert "Weights only load failed" not in err and "pytorch.org" not in err


def test_error_line_keeps_the_first_line_of_a_multiline_cause():
    from fideval.cli._common import error_line

    try:
        try:
            raise ValueError("Short reason.\nA paragraph of advice\n\nand a link")
        except ValueError as cause:
            raise FidevalError(f"weights file w.pth: {cause}") from cause
    except FidevalError as exc:
        assert error_line(exc) == "weights file w.pth: Short reason."
    assert error_line(FidevalError("a\n  b")) == "a b"


@pytest.mark.parametrize("command", ["distance", "fid", "estimate"])
def test_text_file_named_npz_is_not_a_statistics_file(tmp_path, feats, capsys, command):
    """Expected message (owner: io/statsfile.py, pipeline.py): ``<path>: not a statistics file…``."""
    fake = tmp_path / "x.npz"
    fake.write_text("mu,sigma\n1,2\n")
    argv = [command, feats, fake] if command == "estimate" else [command, fake, feats]
    code, _, err = cli(capsys, *argv)
    assert code == 2
    line = one_error_line(err, command)
    assert f"{fake}: not a statistics file" in line, line
    assert "allow_pickle" not in line and "contains pickled (object) data" not in line
