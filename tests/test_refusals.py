"""What fideval refuses on the one path, and how: one line naming the file, the batch or
the key; never a silent number. (Hostile files and header claims: test_hostile_inputs.)"""

from __future__ import annotations

import errno
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import fideval
from fideval.errors import FidevalError
from fideval.io.statsfile import save_stats
from fideval.stats import GaussianStats
from helpers import cli, features, image_folder, images, one_error_line


def test_images_of_different_sizes_name_the_file_and_can_be_skipped(tmp_path):
    folder = image_folder(tmp_path / "imgs", 5, (8, 8), seed=1)
    Image.fromarray(images(1, (9, 8), seed=2)[0]).save(folder / "002b.png")
    raw = fideval.extractor(torch.nn.Flatten())  # no resizing: sizes must agree
    with pytest.raises(FidevalError) as err:
        fideval.streaming.collect(str(folder), raw, num_workers=0, batch_size=6)
    text = str(err.value)
    assert f"{folder / '002b.png'}: size (3, 9, 8)" in text and "--skip-bad" in text
    with pytest.warns(
        UserWarning, match=r"skipped 1 image\(s\) \(unreadable, or of another size\): .*002b\.png"
    ):
        side = fideval.streaming.collect(
            str(folder), raw, num_workers=0, batch_size=6, skip_bad=True
        )
    assert side.n == 5 and side.meta["n_skipped"] == 1


def test_control_characters_in_file_names_are_escaped(tmp_path, capsys):
    folder = image_folder(tmp_path / "imgs", 3, (8, 8), seed=1)
    (folder / "bad\x1b[2J.png").write_bytes(b"not a png")
    code, _, err = cli(
        capsys,
        "stats",
        folder,
        "-o",
        tmp_path / "s.npz",
        "--extractor",
        "digits",
        "--num-workers",
        "0",
        "--no-progress",
    )
    assert code == 2 and "\x1b" not in err and "bad\\x1b[2J.png" in one_error_line(err, "stats")
    code, _, err = cli(
        capsys,
        "stats",
        folder,
        "-o",
        tmp_path / "s.npz",
        "--extractor",
        "digits",
        "--num-workers",
        "0",
        "--no-progress",
        "--skip-bad",
    )
    assert code == 0 and "\x1b" not in err and "bad\\x1b[2J.png" in err


def test_progress_counts_a_batch_after_the_work_and_closes_before_an_error(monkeypatch):
    import tqdm.auto

    events: list[tuple[str, int]] = []

    class Bar:
        def __init__(self, *a, total=None, initial=0, **k):
            self.n = initial

        def update(self, k):
            self.n += k
            events.append(("bar", self.n))

        def close(self):
            events.append(("closed", self.n))

    class Consumer:
        def update(self, batch):
            events.append(("work", int(batch.shape[0])))
            if len([e for e in events if e[0] == "work"]) == 3:
                raise FidevalError("boom")

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    ext = fideval.extractor("digits")
    with pytest.raises(FidevalError, match="boom"):
        fideval.streaming.stream(
            images(10, (8, 8)), ext, into=[Consumer()], batch_size=4, progress=True
        )
    assert events == [("work", 4), ("bar", 4), ("work", 4), ("bar", 8), ("work", 2), ("closed", 8)]


def test_statistics_of_a_pytorch_fid_file(tmp_path):
    x = features(30, 4)
    np.savez(tmp_path / "pf.npz", mu=x.mean(0), sigma=np.cov(x, rowvar=False))  # no n
    stats, _ = fideval.streaming.statistics(str(tmp_path / "pf.npz"))
    assert stats.n is None
    np.testing.assert_array_equal(stats.mu, x.mean(0))
    np.testing.assert_array_equal(stats.sigma, np.cov(x, rowvar=False))


def test_is_warns_on_probabilities_and_odd_widths():
    from fideval.metrics.inception_score import inception_score

    z = np.random.default_rng(0).normal(size=(50, 1008))
    assert inception_score(z, splits=5).warnings == ()
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    (w,) = inception_score(p, splits=5).warnings
    assert "look like probabilities, not logits" in w
    (w,) = inception_score(z[:, :64], splits=5).warnings
    assert "64 columns, a width no common classifier has" in w


def test_big_endian_files_everywhere(tmp_path, capsys):
    x, y = features(40, 5, seed=1), features(30, 5, seed=2, shift=0.3)
    np.save(tmp_path / "x.npy", x.astype(">f8"))
    np.save(tmp_path / "y.npy", y)
    want = fideval.frechet_from_features(x, y).value
    for command in ("fid", "distance"):
        code, out, err = cli(capsys, command, tmp_path / "x.npy", tmp_path / "y.npy", "--json")
        assert code == 0, err
        assert float(__import__("json").loads(out)["fid"]) == pytest.approx(want, rel=1e-12)
    code, _, err = cli(capsys, "stats", tmp_path / "x.npy", "-o", tmp_path / "s.npz")
    assert code == 0, err
    assert fideval.fid(x.astype(">f8"), y).value == pytest.approx(want, rel=1e-12)
    s = GaussianStats()
    s.update(x.astype(">f4"))
    assert s.n == 40


def test_os_errors_on_every_output_are_one_line(tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "f.npy", features(10, 3))
    for code_, name in ((errno.ENOSPC, "ENOSPC"), (errno.EROFS, "EROFS"), (errno.EACCES, "EACCES")):

        def fail(*a, _c=code_, **k):
            raise OSError(_c, __import__("os").strerror(_c), str(tmp_path / "out.npz"))

        monkeypatch.setattr("fideval.cli.stats.save_stats", fail)
        code, _, err = cli(capsys, "stats", tmp_path / "f.npy", "-o", tmp_path / "out.npz")
        line = one_error_line(err, "stats")
        assert code == 2 and line.endswith(f"({name})") and str(tmp_path / "out.npz") in line
    long = tmp_path / ("x" * 300 + ".npy")
    code, _, err = cli(capsys, "features", tmp_path / "f.npy", "-o", long)
    assert code == 2 and "File name too long" in one_error_line(err, "features")


def test_indefinite_covariance_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    sigma = np.diag([1.0, 1.0, -1.0])
    np.savez(bad, mu=np.zeros(3), sigma=sigma)
    good = tmp_path / "good.npz"
    s = GaussianStats()
    s.update(features(20, 3))
    save_stats(good, s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = cli(capsys, "distance", bad, good)
    assert code == 2 and f"{bad}" in one_error_line(err, "distance")


# --------------------------------------------------------------------------- the sweep


def test_odd_first_image_is_the_one_named_and_skipped(tmp_path):
    folder = image_folder(tmp_path / "imgs", 6, (8, 8), seed=1)
    Image.fromarray(images(1, (9, 8), seed=2)[0]).save(folder / "000.png")  # first, odd
    raw = fideval.extractor(torch.nn.Flatten())
    with pytest.raises(FidevalError, match=r"000\.png: size \(3, 9, 8\)"):
        fideval.streaming.collect(str(folder), raw, num_workers=0, batch_size=6)
    with pytest.warns(UserWarning, match=r"000\.png"):
        side = fideval.streaming.collect(str(folder), raw, num_workers=0, skip_bad=True)
    assert side.n == 5


def test_sixteen_bit_pngs_are_scaled_not_clipped(tmp_path):
    eight = images(4, (8, 8), seed=3)[..., 0]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for i, img in enumerate(eight):
        Image.fromarray(img).save(a / f"{i}.png")
        Image.fromarray(img.astype(np.uint16) * 257).save(b / f"{i}.png")
    fa, fb = (
        fideval.streaming.collect(
            str(d), fideval.extractor("digits"), features="required", num_workers=0
        ).features
        for d in (a, b)
    )
    np.testing.assert_array_equal(fa, fb)


def test_digits_refuses_out_of_range_floats_and_integer_dtypes():
    ext = fideval.extractor("digits")
    for bad in (np.full((2, 8, 8, 3), 200.0, np.float32), np.zeros((2, 8, 8, 3), np.uint16)):
        with pytest.raises(FidevalError, match=r"digits extractor: (float images must lie|expec)"):
            fideval.streaming.collect(bad, ext)


@pytest.mark.parametrize(("n", "meta"), [(0, None), (1, None), (None, -3), (None, 1.5)])
def test_statistics_with_fewer_than_two_samples_are_refused(tmp_path, n, meta):
    x = features(10, 3)
    extra = {"n": np.array(n)} if n is not None else {"meta": np.array(f'{{"n": {meta}}}')}
    np.savez(tmp_path / "s.npz", mu=x.mean(0), sigma=np.cov(x, rowvar=False), **extra)
    with pytest.raises(FidevalError, match=r"s\.npz: (key|meta) 'n' is"):
        fideval.load_stats(tmp_path / "s.npz")


def test_metric_options_and_overflow_are_errors_not_numbers():
    from fideval.metrics.cmmd import cmmd
    from fideval.metrics.kid import kid
    from fideval.metrics.prdc import prdc

    a, b = features(60, 8, seed=1), features(60, 8, seed=2, shift=0.5)
    for bad in (
        {"sigma": float("nan")},
        {"sigma": float("inf")},
        {"sigma": 1e-300},
        {"scale": float("inf")},
        {"scale": -1.0},
    ):
        with pytest.raises(FidevalError, match="must be a finite number > 0"):
            cmmd(a, b, **bad)
    with pytest.raises(FidevalError, match=r"the kernel \(γ·xᵀy \+ c\)\^p overflowed"):
        kid(a * 1e200, b * 1e200, subset_size=30)
    with pytest.raises(FidevalError, match="exceed the float32 range"):
        prdc(a * 1e39, b * 1e39, dtype="float32")
    # scale-free metrics keep their value at any magnitude (an exact power-of-two rescale)
    assert prdc(a * 1e200, b * 1e200).to_dict() == prdc(a, b).to_dict()
    assert cmmd(a * 1e200, b * 1e200) == cmmd(a, b)


def test_not_regular_files_loops_and_argparse_errors_are_one_line(tmp_path, capsys):
    import os

    os.mkfifo(tmp_path / "f.npy")
    code, _, err = cli(capsys, "distance", tmp_path / "f.npy", tmp_path / "f.npy")
    assert code == 2 and "not a regular file" in one_error_line(err, "distance")
    os.symlink(tmp_path / "l2.npy", tmp_path / "l1.npy")
    os.symlink(tmp_path / "l1.npy", tmp_path / "l2.npy")
    code, _, err = cli(capsys, "distance", tmp_path / "l1.npy", tmp_path / "l1.npy")
    assert code == 2 and "Too many levels of symbolic links" in one_error_line(err, "distance")
    with pytest.raises(SystemExit) as exit_:
        fideval.cli.main(["fid", "a", "b", "--batch-size", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == "fideval fid: error: argument --batch-size: expected a whole number ≥ 1, got 0\n"
    with pytest.raises(SystemExit):
        fideval.cli.main(["distance", "a", "b", "\x1b[2J"])
    assert capsys.readouterr().err == "fideval: error: unrecognized arguments: \\x1b[2J\n"


def test_outputs_that_are_not_regular_files_are_refused(tmp_path, capsys):
    import os

    np.save(tmp_path / "f.npy", features(10, 3))
    os.mkfifo(tmp_path / "out.npz")
    code, _, err = cli(capsys, "stats", tmp_path / "f.npy", "-o", tmp_path / "out.npz")
    assert code == 2 and "exists and is not a regular file" in one_error_line(err, "stats")
