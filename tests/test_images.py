"""Image sources -> preprocessed batches -> streaming statistics, and `fideval fid`."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from fideval.cli import main
from fideval.data.images import (
    ImageStream,
    image_array_key,
    iter_image_batches,
    list_image_files,
    load_image_file,
)
from fideval.errors import FidevalError, NonFiniteFeaturesError
from fideval.features.inception import seeded_random_state_dict
from fideval.features.preprocess import get_profile, preprocess_batch, preprocess_image
from fideval.streaming import statistics as stats_from_images
from fideval.streaming import stream as stream_features


def profile_batches(source, *args, profile="pytorch-fid", **kwargs):
    """Image batches through a named preprocessing profile (what extractors hand the stream)."""
    from fideval.features.preprocess import get_profile

    return iter_image_batches(source, *args, preprocess=get_profile(profile), **kwargs)


def _rgb(seed, h=12, w=12):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    """5 images of 3 sizes, nested, mixed extensions and modes, plus non-images."""
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(_rgb(0)).save(root / "b.png")
    Image.fromarray(_rgb(1, 9, 14)).save(root / "A.PNG")
    Image.fromarray(_rgb(2)[..., 0]).save(root / "sub" / "c.png")  # grayscale 'L'
    rgba = np.concatenate([_rgb(3, 16, 10), np.full((16, 10, 1), 9, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(root / "sub" / "d.png")  # RGBA
    Image.fromarray(_rgb(4)).save(root / "e.bmp")
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "arr.npy").write_bytes(b"")
    return root


class MeanColour:
    """A tiny extractor: per-channel means of the (preprocessed) image. dims = 3."""

    id = "mean-colour"
    dims = 3
    profile = "pytorch-fid"
    weights_sha256 = "none"
    # The extractor contract's fast path: the profile runs in the workers, then features().
    worker_preprocess = get_profile("pytorch-fid")

    def features(self, x):
        return x.mean(dim=(2, 3))

    def __call__(self, images):
        return self.features(self.worker_preprocess(images))

    def provenance(self):
        return {
            "extractor": self.id,
            "weights_sha256": "none",
            "dims": 3,
            "profile": self.profile,
            "image_size": 299,
        }


def test_listing_is_recursive_sorted_and_filtered(folder):
    files = [p.relative_to(folder).as_posix() for p in list_image_files(folder)]
    assert files == ["A.PNG", "b.png", "e.bmp", "sub/c.png", "sub/d.png"]


def test_gray_and_rgba_files_decode_to_rgb(folder):
    gray = load_image_file(folder / "sub" / "c.png")
    assert gray.shape == (12, 12, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    rgba = load_image_file(folder / "sub" / "d.png")
    assert rgba.shape == (16, 10, 3) and np.array_equal(rgba, _rgb(3, 16, 10))


@pytest.mark.parametrize("workers", [0, 1])
def test_folder_with_mixed_sizes(folder, workers):
    stream = profile_batches(folder, batch_size=2, num_workers=workers)
    batches = list(stream)
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    got = torch.cat(batches)
    assert got.shape == (5, 3, 299, 299) and got.dtype == torch.float32
    ref = torch.stack([preprocess_image(load_image_file(p)) for p in list_image_files(folder)])
    # bit-equal in-process; workers run torch with 1 thread (resize may differ by an ulp)
    torch.testing.assert_close(got, ref, atol=1e-6 if workers else 0, rtol=0)
    assert stream.n_images == 5 and stream.skipped == []
    desc = stream.description()
    assert desc["source_kind"] == "folder" and desc["source"] == str(folder.resolve())
    assert desc["source_fingerprint"].startswith("files+sizes+mtimes:")


def test_fingerprint_changes_with_content(folder):
    before = ImageStream(folder).description()["source_fingerprint"]
    Image.fromarray(_rgb(9, 30, 30)).save(folder / "b.png")
    assert ImageStream(folder).description()["source_fingerprint"] != before


def test_corrupt_file_names_its_path(folder):
    bad = folder / "sub" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(FidevalError) as err:
        list(profile_batches(folder, batch_size=2, num_workers=0))
    assert str(bad) in str(err.value) and "skip" in str(err.value)


def test_skip_bad_reports_count_and_paths(folder):
    bad1 = folder / "sub" / "broken.jpg"
    bad1.write_bytes(b"garbage")
    bad2 = folder / "zz.png"
    bad2.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    stream = profile_batches(folder, batch_size=3, num_workers=1, skip_bad=True)
    with pytest.warns(
        UserWarning, match=r"skipped 2 image\(s\) \(unreadable, or of another size\)"
    ) as rec:
        n = sum(b.shape[0] for b in stream)
    assert n == 5 and stream.n_images == 5
    assert [p for p, _ in stream.skipped] == [str(bad1), str(bad2)]
    assert str(bad1) in str(rec[0].message) and str(bad2) in str(rec[0].message)
    desc = stream.description()
    assert desc["n_skipped"] == 2 and desc["skipped"] == [str(bad1), str(bad2)]


def test_all_bad_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"nope")
    with pytest.raises(FidevalError, match="no images could be read"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        list(profile_batches(tmp_path, num_workers=0, skip_bad=True))


def test_empty_folder_and_bad_paths(tmp_path):
    with pytest.raises(FidevalError, match="no image files"):
        profile_batches(tmp_path)
    with pytest.raises(FidevalError, match="does not exist"):
        profile_batches(tmp_path / "missing")
    with pytest.raises(FidevalError, match="cannot read images"):
        profile_batches(42)


def test_image_array_files(tmp_path):
    imgs = np.stack([_rgb(i) for i in range(7)])
    np.save(tmp_path / "imgs.npy", imgs)
    np.savez(tmp_path / "samples.npz", imgs, np.arange(7))  # guided-diffusion: arr_0, arr_1
    np.save(tmp_path / "feats.npy", np.zeros((10, 64), np.float32))
    np.savez(tmp_path / "stats.npz", mu=np.zeros(4), sigma=np.eye(4))
    np.save(tmp_path / "gray.npy", imgs[..., 0])
    assert image_array_key(tmp_path / "imgs.npy") == ""
    assert image_array_key(tmp_path / "samples.npz") == "arr_0"
    assert image_array_key(tmp_path / "gray.npy") == ""
    assert image_array_key(tmp_path / "feats.npy") is None
    assert image_array_key(tmp_path / "stats.npz") is None
    with pytest.raises(FidevalError, match=r"missing\.npy: no such file"):
        image_array_key(tmp_path / "missing.npy")
    ref = preprocess_batch(imgs, "clean")
    for name in ("imgs.npy", "samples.npz"):
        for workers in (0, 1) if name == "imgs.npy" else (0,):
            stream = profile_batches(
                tmp_path / name, batch_size=3, num_workers=workers, profile="clean"
            )
            got = torch.cat(list(stream))
            assert torch.equal(got, ref), (name, workers)
    desc = profile_batches(tmp_path / "samples.npz").description()
    assert desc["source_key"] == "arr_0" and desc["source_shape"] == [7, 12, 12, 3]
    with pytest.raises(FidevalError, match="no image array"):
        profile_batches(tmp_path / "feats.npy")


def test_tensors_loaders_and_iterables():
    imgs = torch.rand(5, 3, 10, 10)
    ref = preprocess_batch(imgs, "pytorch-fid")
    assert torch.equal(torch.cat(list(profile_batches(imgs, batch_size=2))), ref)
    ds = torch.utils.data.TensorDataset(imgs, torch.arange(5))
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    stream = profile_batches(loader)
    assert stream.n_total == 5
    assert torch.equal(torch.cat(list(stream)), ref)  # (images, labels) tuples
    dicts = [{"images": imgs[:3]}, {"images": imgs[3:]}]
    assert torch.equal(torch.cat(list(profile_batches(dicts))), ref)
    singles = [[imgs[0], imgs[1, :, :7, :9]]]  # a list of images of different sizes
    got = torch.cat(list(profile_batches(singles)))
    assert torch.equal(got[0], ref[0]) and got.shape == (2, 3, 299, 299)
    with pytest.raises(FidevalError, match="batch 0"):
        list(profile_batches([["a", "b"]]))


def test_stats_from_images_streams_like_numpy(folder):
    stats, meta = stats_from_images(
        folder, MeanColour(), batch_size=2, num_workers=0, progress=False
    )
    feats = (
        torch.stack(
            [
                preprocess_image(load_image_file(p)).mean(dim=(1, 2))
                for p in list_image_files(folder)
            ]
        )
        .double()
        .numpy()
    )
    assert stats.n == 5
    np.testing.assert_allclose(stats.mean, feats.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(stats.cov, np.cov(feats, rowvar=False), rtol=1e-5, atol=1e-7)
    assert meta["extractor"] == "mean-colour" and meta["n"] == 5
    assert meta["source"] == str(folder.resolve()) and meta["input_kind"] == "images"
    assert "fideval_version" in meta
    json.dumps(meta)  # provenance is JSON-able


def test_feature_batches_name_non_finite_images(folder):
    class Broken(MeanColour):
        def features(self, images):
            out = super().features(images)
            out[1, 0] = float("nan")
            return out

    with pytest.raises(NonFiniteFeaturesError) as err:
        stream_features(folder, Broken(), into=[], batch_size=2, num_workers=0)
    text = str(err.value)
    assert str(folder) in text and "batch 0" in text and "A.PNG" in text


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "random-inception.pth"
    torch.save(seeded_random_state_dict(7), path)
    return path


def _run(capsys, *argv):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_cli_fid_two_folders(folder, tmp_path, weights, capsys):
    other = tmp_path / "other"
    other.mkdir()
    for i in range(4):
        Image.fromarray(_rgb(20 + i, 11, 13)).save(other / f"{i}.png")
    common = ["--weights", str(weights), "--dims", "64", "--num-workers", "0", "--no-progress"]
    code, out, _ = _run(capsys, "fid", str(folder), str(other), *common, "--json")
    assert code == 0
    res = json.loads(out)
    assert res["fid"] > 0 and res["n_a"] == 5 and res["n_b"] == 4
    assert res["meta_a"]["dims"] == 64 and res["meta_a"]["profile"] == "pytorch-fid"
    assert res["meta_a"]["weights_sha256"] == res["meta_b"]["weights_sha256"]
    code, out, _ = _run(capsys, "fid", str(folder), str(folder), *common)
    assert code == 0 and out.startswith("FID:") and abs(float(out.split()[1])) < 1e-6

    # statistics saved with one profile are not compared with images of another
    stats_file = tmp_path / "a.npz"
    code, _, _ = _run(capsys, "stats", str(folder), "-o", str(stats_file), *common)
    assert code == 0
    code, _, err = _run(capsys, "fid", str(stats_file), str(other), *common, "--profile", "clean")
    assert code == 2 and "profile" in err
    code, out, _ = _run(
        capsys,
        "fid",
        str(stats_file),
        str(other),
        *common,
        "--profile",
        "clean",
        "--force",
        "--json",
    )
    assert code == 0 and json.loads(out)["n_a"] == 5


def test_netpbm_pgm_and_ppm_folders_read_like_png_copies(tmp_path):
    """.pgm (grayscale) and .ppm (RGB), any case, are read as pytorch-fid reads them.

    Netpbm is lossless, so each file must decode to the very pixels of a PNG copy of
    the same image, and the folder's batches must equal those of the PNG folder.
    """
    pnm, png = tmp_path / "pnm", tmp_path / "png"
    pnm.mkdir()
    png.mkdir()
    images = {
        "a_gray.pgm": _rgb(10, 11, 13)[..., 0],  # mode 'L'
        "b_rgb.ppm": _rgb(11, 14, 9),  # mode 'RGB'
        "c_upper.PPM": _rgb(12, 8, 8),
        "d_upper.PGM": _rgb(13, 9, 10)[..., 1],
    }
    for name, arr in images.items():
        Image.fromarray(arr).save(pnm / name, format="PPM")  # PIL writes P5 / P6 by mode
        Image.fromarray(arr).save(png / (name.rsplit(".", 1)[0] + ".png"))
    listed = [p.name for p in list_image_files(pnm)]
    assert listed == sorted(images)
    for name, arr in images.items():
        got = load_image_file(pnm / name)
        rgb = np.repeat(arr[..., None], 3, axis=-1) if arr.ndim == 2 else arr
        assert got.dtype == np.uint8 and np.array_equal(got, rgb), name
        assert np.array_equal(got, load_image_file(png / (name.rsplit(".", 1)[0] + ".png")))
    a = torch.cat(list(profile_batches(pnm, batch_size=3, num_workers=0)))
    b = torch.cat(list(profile_batches(png, batch_size=3, num_workers=0)))
    assert a.shape == (4, 3, 299, 299)
    assert torch.equal(a, b)
