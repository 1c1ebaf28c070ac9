"""The one path: each input opened once, the seams that used to disagree, one pass for
many metrics, and the reference cache on the same path."""

from __future__ import annotations

import json
import os
import pickle
import sys
import warnings
from collections import Counter

import numpy as np
import pytest
import torch

import fideval
from fideval.errors import FidevalError
from fideval.io.statsfile import load_stats, save_stats
from fideval.stats import GaussianStats
from fideval.train.reference import compute_reference_stats
from helpers import cli, features, image_folder, images, inception_weights, one_error_line

# --------------------------------------------------------------------------- opens


_OPENS: Counter = Counter()
_WATCH: list[str] = []


def _hook(event: str, args: tuple) -> None:
    if event == "open" and _WATCH and isinstance(args[0], str | bytes | os.PathLike):
        path = os.fsdecode(args[0])
        for root in _WATCH:
            if path == root or path.startswith(root + os.sep):
                _OPENS[path] += 1


sys.addaudithook(_hook)  # audit hooks cannot be removed; it counts only while watching


class opens:
    """Count ``open`` audit events on files at or under the given paths."""

    def __init__(self, *paths: object) -> None:
        self.paths = [os.fspath(p) for p in paths]

    def __enter__(self) -> Counter:
        _OPENS.clear()
        _WATCH[:] = self.paths
        return _OPENS

    def __exit__(self, *exc: object) -> None:
        _WATCH.clear()


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("one") / "digits", 12, (8, 8), seed=1)


def test_each_input_is_opened_once_per_command(tmp_path, digits_folder, capsys):
    feats = tmp_path / "f.npy"
    np.save(feats, features(40, 64, seed=2))
    arr = tmp_path / "samples.npz"
    np.savez(arr, images(10, (8, 8), seed=3), np.arange(10))  # guided-diffusion: arr_0, arr_1
    stats = tmp_path / "s.npz"
    s = GaussianStats()
    s.update(features(50, 64, seed=4))
    save_stats(stats, s, fideval.extractor("digits").provenance())
    for a, b in ((digits_folder, arr), (feats, stats), (arr, stats)):
        with opens(a, b) as counted:
            code, _, err = cli(
                capsys, "fid", a, b, "--extractor", "digits", "--num-workers", "0", "--no-progress"
            )
        assert code == 0, err
        expected = (
            {str(p) for p in sorted(digits_folder.iterdir())} if a == digits_folder else set()
        )
        expected |= {str(p) for p in (a, b) if not os.path.isdir(p)}
        assert set(counted) == expected
        assert all(c == 1 for c in counted.values()), counted
    with opens(feats, stats) as counted:
        code, _, err = cli(capsys, "distance", feats, stats)
    assert code == 0 and dict(counted) == {str(feats): 1, str(stats): 1}, (err, counted)


# --------------------------------------------------------------------------- seams


def test_guided_diffusion_two_key_sample_file_everywhere(tmp_path, capsys):
    """arr_0 images + arr_1 labels: read as images by fid, kid, eval and fideval.fid."""
    imgs = images(20, (8, 8), seed=5)
    path = tmp_path / "samples.npz"
    np.savez(path, imgs, np.arange(20) % 10)
    ref = features(30, 64, seed=6)
    ext = fideval.extractor("digits")
    direct = fideval.fid(imgs, ref, extractor=ext).value
    assert fideval.fid(str(path), ref, extractor="digits").value == pytest.approx(direct, rel=1e-12)
    np.save(tmp_path / "ref.npy", ref)
    for command, extra in (("fid", []), ("kid", ["--subset-size", "10"])):
        code, out, err = cli(
            capsys,
            command,
            path,
            tmp_path / "ref.npy",
            "--extractor",
            "digits",
            "--no-progress",
            "--json",
            *extra,
        )
        assert code == 0, err
    assert json.loads(out)["kid"] == pytest.approx(
        fideval.evaluate(imgs, ref, ["kid"], extractor=ext, kid_options={"subset_size": 10})["kid"],
        rel=1e-12,
    )


def test_statistics_of_another_extractor_name_it(tmp_path, capsys):
    stats = tmp_path / "digits.npz"
    s = GaussianStats()
    s.update(features(80, 64, seed=7))
    save_stats(stats, s, fideval.extractor("digits").provenance())
    np.save(tmp_path / "f.npy", features(30, 2048, seed=8))
    _, _, err = cli(capsys, "distance", stats, tmp_path / "f.npy")
    line = one_error_line(err, "distance")
    assert "has d=64 (made by extractor 'digits-cnn')" in line
    assert "use the same extractor for both sides (e.g. extractor 'digits')" in line


def test_distance_on_images_points_to_fid_not_to_weights(tmp_path, digits_folder, capsys):
    code, _, err = cli(capsys, "distance", digits_folder, digits_folder)
    line = one_error_line(err, "distance")
    assert code == 2 and "use `fideval fid" in line and "--weights" not in line


def test_option_an_extractor_does_not_take_is_an_error(tmp_path, capsys):
    with pytest.raises(FidevalError, match=r"'clip-vitl14-336' does not take dims=; it takes"):
        fideval.extractor("clip-vitl14-336", dims=64)
    np.save(tmp_path / "a.npy", images(3, (8, 8)))
    code, _, err = cli(capsys, "cmmd", tmp_path / "a.npy", tmp_path / "a.npy", "--dims", "64")
    assert code == 2
    assert "extractor 'clip-vitl14-336' does not take dims=" in one_error_line(err, "cmmd")


def test_alias_with_dims_gives_those_dims(tmp_path):
    weights = inception_weights(tmp_path / "w.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights are not the official file
        ext = fideval.extractor("fid-inception", dims=64, weights=weights, device="cpu")
    assert ext.dims == 64
    assert ext(torch.zeros(1, 3, 16, 16, dtype=torch.uint8)).shape == (1, 64)


def test_help_comes_from_the_registry_and_device_defaults_agree(capsys):
    from fideval.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        for action in p._actions:
            if "--device" in action.option_strings:
                assert action.default is None, name  # CUDA when available, everywhere
            if "--extractor" in action.option_strings:
                for registered in fideval.extractor_names():
                    assert registered in action.help, (name, registered)
                assert f"default {action.default}" in action.help
    cmmd = sub.choices["cmmd"]
    ext = next(a for a in cmmd._actions if "--extractor" in a.option_strings)
    assert ext.default == "clip-vitl14-336" and "default clip-vitl14-336" in ext.help
    dims = next(a for a in cmmd._actions if "--dims" in a.option_strings)
    assert "inception (64, 192, 768, 2048)" in dims.help and "clip" not in dims.help


def test_a_registered_extractor_appears_in_the_help():
    from fideval.cli import build_parser
    from fideval.features import registry

    def tiny(*, device=None):
        return fideval.extractor(torch.nn.Flatten(), id="tiny")

    registry.register_extractor("tiny-test", tiny, dims=192, profile="unit", protocol="a test")
    try:
        help_text = build_parser()._subparsers._group_actions[0].choices["fid"].format_help()
        assert "tiny-test: a test, 192-d" in " ".join(help_text.split())
        assert fideval.extractor("tiny-test").id == "tiny"
        with pytest.raises(FidevalError, match="does not take weights="):
            fideval.extractor("tiny-test", weights="w.pth")
    finally:
        registry._SPECS.pop("tiny-test")


def test_adm_save_stats_provenance_is_read_by_load_stats(tmp_path):
    from fideval.metrics.adm import POOL_DIM, SPATIAL_DIM, save_adm_stats

    stats = {
        "mu": np.zeros(POOL_DIM),
        "sigma": np.eye(POOL_DIM),
        "mu_s": np.zeros(SPATIAL_DIM),
        "sigma_s": np.eye(SPATIAL_DIM),
    }
    path = save_adm_stats(
        tmp_path / "s.npz",
        stats,
        n=10,
        provenance={"extractor": "inception-v3-fid", "profile": "adm-tf1-bilinear", "dims": 2048},
    )
    rec = load_stats(path)
    assert rec.meta["extractor"] == "inception-v3-fid" and rec.meta["profile"] == "adm-tf1-bilinear"
    pytorch_fid_side = {"extractor": "inception-v3-fid", "profile": "pytorch-fid", "dims": 2048}
    with pytest.raises(FidevalError, match="profile: 'adm-tf1-bilinear'"):
        fideval.check_compatible(rec.meta, pytorch_fid_side)


# --------------------------------------------------------------------------- one pass


def test_eval_equals_each_subcommand_and_caches(tmp_path, digits_folder, capsys, monkeypatch):
    other = image_folder(tmp_path / "other", 12, (8, 8), seed=9)
    flags = ["--extractor", "digits", "--num-workers", "0", "--no-progress", "--json"]
    code, out, err = cli(
        capsys,
        "eval",
        other,
        digits_folder,
        "--metrics",
        "fid,kid,prdc,cmmd",
        "--kid-subset-size",
        "6",
        "--k",
        "3",
        "--cache",
        tmp_path / "c",
        *flags,
    )
    assert code == 0, err
    together = json.loads(out)
    assert together["from_cache"] == [False, False]
    single = {}
    for command, extra in (("fid", []), ("kid", ["--subset-size", "6"]), ("cmmd", [])):
        code, out, err = cli(capsys, command, other, digits_folder, *extra, *flags)
        assert code == 0, err
        single.update(json.loads(out))
    code, out, err = cli(capsys, "prdc", digits_folder, other, "--k", "3", *flags)
    single.update(json.loads(out))
    for key in ("fid", "kid", "cmmd", "precision", "recall", "density", "coverage"):
        assert together[key] == pytest.approx(single[key], rel=1e-12, abs=1e-15), key
    # a second run extracts nothing: every batch comes from the cache
    from fideval.features.digits import DigitsFeatureExtractor

    monkeypatch.setattr(DigitsFeatureExtractor, "forward", lambda *a: pytest.fail("extracted"))
    code, out, err = cli(
        capsys,
        "eval",
        other,
        digits_folder,
        "--metrics",
        "fid,kid,prdc,cmmd",
        "--kid-subset-size",
        "6",
        "--k",
        "3",
        "--cache",
        tmp_path / "c",
        *flags,
    )
    again = json.loads(out)
    assert code == 0 and again["from_cache"] == [True, True]
    for key in ("fid", "kid", "cmmd", "precision"):
        assert again[key] == pytest.approx(together[key], rel=1e-12), key


def test_evaluate_refuses_statistics_for_sample_metrics(tmp_path):
    s = GaussianStats()
    s.update(features(20, 4))
    with pytest.raises(FidevalError, match="kid needs the samples"):
        fideval.evaluate(features(20, 4), s, ["fid", "kid"])
    assert fideval.evaluate(features(20, 4, seed=1), s, ["fid"])["fid"] == pytest.approx(
        fideval.fid(features(20, 4, seed=1), s).value, rel=1e-12
    )


# --------------------------------------------------------------------------- reference


def test_reference_cache_covers_every_file(tmp_path):
    """Changing one image that a 64-file sample would miss recomputes, and says why."""
    folder = image_folder(tmp_path / "ref", 100, (8, 8), seed=11)
    ext = fideval.extractor("digits")
    logs: list[str] = []
    first = compute_reference_stats(folder, ext, cache_dir=tmp_path / "c", log=logs.append)
    hit = compute_reference_stats(folder, ext, cache_dir=tmp_path / "c", log=logs.append)
    assert hit.from_cache and not first.from_cache
    from PIL import Image

    Image.fromarray(images(1, (8, 8), seed=99)[0]).save(folder / "001.png")  # not a multiple of 64
    fresh = compute_reference_stats(folder, ext, cache_dir=tmp_path / "c", log=logs.append)
    assert not fresh.from_cache
    assert any("the source changed since it was cached" in m for m in logs), logs
    direct = fideval.fid(str(folder), features(30, 64), extractor=ext)
    assert np.abs(fresh.record.mu - first.record.mu).max() > 0
    np.testing.assert_allclose(
        fresh.record.mu, GaussianStats.from_moments(*_moments(folder, ext)).mean, rtol=1e-12
    )
    assert direct.value > 0


def _moments(folder, ext):
    side = fideval.streaming.collect(str(folder), ext, features="required", num_workers=0)
    f = side.features.astype(np.float64)
    return f.shape[0], f.mean(0), np.cov(f, rowvar=False) * (f.shape[0] - 1)


def test_reference_accepts_edm2_pickles_and_two_key_files(tmp_path):
    rng = np.random.default_rng(0)
    f = rng.standard_normal((50, 8))
    with open(tmp_path / "img512.pkl", "wb") as fh:
        pickle.dump({"num_images": 50, "fd_dinov2": {"mu": f.mean(0), "sigma": np.cov(f.T)}}, fh)
    ref = compute_reference_stats(str(tmp_path / "img512.pkl") + "#fd_dinov2", None, cache_dir="")
    np.testing.assert_array_equal(ref.record.mu, f.mean(0))
    np.savez(tmp_path / "s.npz", images(6, (8, 8), seed=1), np.arange(6))
    ext = fideval.extractor("digits")
    two = compute_reference_stats(tmp_path / "s.npz", ext, cache_dir="")
    assert two.record.n == 6


def test_reference_read_only_cache_fails_before_work_and_write_failure_keeps_result(
    tmp_path, monkeypatch
):
    ext = fideval.extractor("digits")
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(
        "fideval.train.reference.check_writable",
        lambda p: (_ for _ in ()).throw(FidevalError(f"{p}: cannot write in folder {ro} (denied)")),
    )
    monkeypatch.setattr(ext, "forward", lambda *a: pytest.fail("work started"))
    with pytest.raises(FidevalError, match=r"reference cache: .*cannot write in folder"):
        compute_reference_stats(images(5, (8, 8)), ext, cache_dir=ro)
    monkeypatch.undo()

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "c" / "x.npz"))

    monkeypatch.setattr("fideval.train.reference.save_stats", full_disk)
    with pytest.warns(UserWarning, match="computed but not cached: .*No space left"):
        out = compute_reference_stats(images(5, (8, 8)), ext, cache_dir=tmp_path / "c")
    assert out.record.n == 5


def test_reference_checkpoint_of_one_image(tmp_path):
    ext = fideval.extractor("digits")
    out = compute_reference_stats(
        images(4, (8, 8)), ext, cache_dir=tmp_path, batch_size=1, checkpoint_every=1
    )
    assert out.record.n == 4


# --------------------------------------------------------------------------- OS errors


def test_an_os_error_on_an_output_is_one_line(tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "f.npy", features(10, 3))
    target = tmp_path / "s.npz"

    def no_space(*a, **k):
        try:
            raise OSError(28, "No space left on device", str(target) + ".tmp")
        except OSError as inner:
            raise OSError("could not write") from inner

    monkeypatch.setattr("fideval.cli.stats.save_stats", no_space)
    code, _, err = cli(capsys, "stats", tmp_path / "f.npy", "-o", target)
    line = one_error_line(err, "stats")
    assert code == 2 and line.endswith(f"{target}.tmp: No space left on device (ENOSPC)")


def test_folder_named_like_an_array_file(tmp_path, capsys):
    (tmp_path / "x.npz").mkdir()
    code, _, err = cli(capsys, "distance", tmp_path / "x.npz", tmp_path / "x.npz")
    assert code == 2 and "x.npz: is a folder, not a .npz file" in one_error_line(err, "distance")


# --------------------------------------------------------------------------- compare


def test_compare_any_source_equals_compare_features(tmp_path, capsys):
    from fideval.metrics.compare import compare_features

    ext = fideval.extractor("digits")
    a, b, ref = images(30, (8, 8), seed=20), images(30, (8, 8), seed=21), images(40, (8, 8), 22)
    fa, fb, fr = (
        fideval.streaming.collect(x, ext, features="required").features for x in (a, b, ref)
    )
    want = compare_features(fa, fb, fr, paired=True)
    got = fideval.compare(a, b, ref, extractor=ext)
    assert got.to_dict() == want.to_dict()
    np.save(tmp_path / "a.npy", fa)
    np.save(tmp_path / "b.npy", fb)
    s = GaussianStats()
    s.update(fr)
    save_stats(tmp_path / "ref.npz", s, ext.provenance())
    code, out, err = cli(
        capsys,
        "compare",
        tmp_path / "a.npy",
        tmp_path / "b.npy",
        tmp_path / "ref.npz",
        "--unpaired",
        "--json",
    )
    assert code == 0, err
    unpaired = compare_features(fa, fb, s, paired=False).to_dict()
    assert json.loads(out)["difference"] == pytest.approx(unpaired["difference"], rel=1e-12)
    assert json.loads(out)["ci95"] == pytest.approx(list(unpaired["ci95"]), rel=1e-12)
    code, _, err = cli(
        capsys, "compare", tmp_path / "ref.npz", tmp_path / "b.npy", tmp_path / "ref.npz"
    )
    assert code == 2 and "a comparison needs the samples" in one_error_line(err, "compare")
