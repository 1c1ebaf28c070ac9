"""The ADM evaluator's suite: TF1 resize, streaming .npz reads, manifolds, IS, parity.

Parity with torch-fidelity's ``FeatureExtractorInceptionV3`` (its TF1 resize is exact)
uses seeded random weights loaded into both networks. With the contiguous memory layout
both run the same float32 CPU kernels and agree bit for bit; with fideval's default
channels-last layout on the CPU the convolutions use other kernels and pool_3 differs by
≈2e-7 (values ≈0.9), sFID features by ≈5e-7: the tolerances below (1e-5 absolute for
features, 1e-5 relative for FD in that layout) leave room for other CPUs' kernels. The
random network's features differ little between images (≈1 % of their norm), so an FD
between two sets amplifies feature round-off ≈100×.
"""

from __future__ import annotations

import io
import json
import math
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fideval.cli import main
from fideval.data.arrayfile import ArrayFile
from fideval.errors import FidevalError
from fideval.features.inception import FIDInceptionV3, InceptionExtractor, seeded_random_state_dict
from fideval.features.tf1_resize import tf1_resize_bilinear
from fideval.frechet import frechet_details
from fideval.metrics import adm
from fideval.metrics.adm import (
    ADMInception,
    adm_inception_score,
    adm_preprocess,
    adm_suite,
    manifold_radii,
    precision_recall,
    spatial_hwc,
)
from fideval.stats import GaussianStats

# --------------------------------------------------------------------------- references


def np_tf1_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 ResizeBilinear (align_corners=False, no half-pixel centres), per output pixel,
    float32: src = dst·in/out, lo = floor(src), hi = min(lo + 1, in − 1)."""
    c, in_h, in_w = img.shape

    def axis(n_in: int, n_out: int) -> list[tuple[int, int, np.float32]]:
        scale = np.float32(n_in) / np.float32(n_out)
        out = []
        for j in range(n_out):
            src = np.float32(j) * scale
            lo = math.floor(src)
            out.append((lo, min(lo + 1, n_in - 1), np.float32(src - np.float32(lo))))
        return out

    ys, xs = axis(in_h, out_h), axis(in_w, out_w)
    ylo = np.array([y[0] for y in ys])
    yhi = np.array([y[1] for y in ys])
    ty = np.array([y[2] for y in ys], np.float32)[:, None]
    xlo = np.array([x[0] for x in xs])
    xhi = np.array([x[1] for x in xs])
    tx = np.array([x[2] for x in xs], np.float32)[None, :]
    out = np.empty((c, out_h, out_w), np.float32)
    for ch in range(c):
        a = img[ch][np.ix_(ylo, xlo)]
        b = img[ch][np.ix_(ylo, xhi)]
        cc = img[ch][np.ix_(yhi, xlo)]
        e = img[ch][np.ix_(yhi, xhi)]
        top = a + (b - a) * tx
        bottom = cc + (e - cc) * tx
        out[ch] = top + (bottom - top) * ty
    return out


def np_adm_block(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, bool]:
    """ADM's DistanceBlock in numpy float16 arithmetic (sums exact, then float32, float16):
    D = max((‖u‖² − 2uᵀv) + ‖v‖², 0), then — ADM's order — float32 when any entry of the
    clamped float16 block is non-finite. Returns (D, fell back)."""
    u16, v16 = u.astype(np.float16), v.astype(np.float16)
    with np.errstate(over="ignore", invalid="ignore"):
        nu = (u16 * u16).astype(np.float64).sum(1).astype(np.float32).astype(np.float16)
        nv = (v16 * v16).astype(np.float64).sum(1).astype(np.float32).astype(np.float16)
        dot = u16.astype(np.float64) @ v16.astype(np.float64).T
        dot = dot.astype(np.float32).astype(np.float16)
        d = np.maximum((nu[:, None] - dot * np.float16(2)) + nv[None, :], np.float16(0))
    if np.isfinite(d).all():
        return d.astype(np.float32), False
    u64, v64 = u.astype(np.float64), v.astype(np.float64)
    nu32 = (u64 * u64).astype(np.float32).astype(np.float64).sum(1).astype(np.float32)
    nv32 = (v64 * v64).astype(np.float32).astype(np.float64).sum(1).astype(np.float32)
    dot32 = (u64 @ v64.T).astype(np.float32)
    return np.maximum((nu32[:, None] - dot32 * np.float32(2)) + nv32[None, :], 0), True


def np_adm_pairwise(u: np.ndarray, v: np.ndarray, block: int) -> tuple[np.ndarray, int]:
    out = np.empty((len(u), len(v)), np.float32)
    falls = 0
    for i in range(0, len(u), block):
        for j in range(0, len(v), block):
            out[i : i + block, j : j + block], f = np_adm_block(u[i : i + block], v[j : j + block])
            falls += f
    return out, falls


def np_pr(x: np.ndarray, y: np.ndarray, profile: str, k: int = 3, block: int = 10000):
    """Brute-force precision, recall, reference radii (all pairs at once)."""
    if profile == "adm":
        rx = np.sort(np_adm_pairwise(x, x, block)[0], axis=1)[:, k]  # self included
        ry = np.sort(np_adm_pairwise(y, y, block)[0], axis=1)[:, k]
        d = np_adm_pairwise(x, y, block)[0]
    else:

        def sq(a, b):
            diff = a[:, None, :].astype(np.float64) - b[None, :, :].astype(np.float64)
            return (diff * diff).sum(-1)

        dx, dy = sq(x, x), sq(y, y)
        np.fill_diagonal(dx, np.inf)
        np.fill_diagonal(dy, np.inf)
        rx, ry = np.sort(dx, 1)[:, k - 1], np.sort(dy, 1)[:, k - 1]
        d = sq(x, y)
    precision = (d <= rx[:, None]).any(axis=0).mean()
    recall = (d <= ry[None, :]).any(axis=1).mean()
    return float(precision), float(recall), rx


def np_inception_score(logits: np.ndarray, split: int = 5000) -> float:
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for i in range(0, len(p), split):
        part = p[i : i + split]
        kl = (part * (np.log(part) - np.log(part.mean(0, keepdims=True)))).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores))


def np_fd(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return frechet_details(
        a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False), n1=len(a), n2=len(b)
    ).value


# --------------------------------------------------------------------------- TF1 resize


@pytest.mark.parametrize(
    ("h", "w", "oh", "ow"),
    [(32, 32, 299, 299), (17, 23, 299, 299), (300, 311, 299, 299), (5, 7, 4, 9)],
)
def test_tf1_resize_matches_numpy_formula(h, w, oh, ow):
    rng = np.random.default_rng(h * w)
    img = rng.integers(0, 256, (3, h, w)).astype(np.float32)
    got = tf1_resize_bilinear(torch.from_numpy(img)[None], (oh, ow))[0].numpy()
    # The same float32 operations in the same order: bit-identical.
    np.testing.assert_array_equal(got, np_tf1_resize(img, oh, ow))


def test_tf1_resize_is_not_half_pixel_bilinear():
    x = torch.arange(32 * 32, dtype=torch.float32).reshape(1, 1, 32, 32)
    ours = tf1_resize_bilinear(x, 299)
    torch_hp = torch.nn.functional.interpolate(
        x, size=(299, 299), mode="bilinear", align_corners=False
    )
    assert float((ours - torch_hp).abs().max()) > 1.0
    assert float(ours[0, 0, 0, 0]) == 0.0  # src = 0 exactly: no half-pixel offset
    assert tf1_resize_bilinear(torch.ones(1, 3, 299, 299)).shape == (1, 3, 299, 299)


def test_tf1_resize_matches_torch_fidelity():
    tfc = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow")
    x = torch.randint(0, 256, (2, 3, 64, 48)).float()
    ref = tfc.interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    assert torch.equal(tf1_resize_bilinear(x, 299), ref)


def test_adm_preprocess_range_and_errors():
    img = np.zeros((1, 8, 8, 3), np.uint8)
    img[..., 1] = 255
    x = adm_preprocess(img)
    assert x.shape == (1, 3, 299, 299)
    assert float(x[0, 0].max()) == -1.0 and float(x[0, 1].min()) == 127 / 128
    with pytest.raises(FidevalError, match="uint8"):
        adm_preprocess(img.astype(np.float32))


# --------------------------------------------------------------------------- streaming reads


@pytest.mark.parametrize("compressed", [False, True])
def test_streaming_equals_whole_load(tmp_path, compressed):
    """Rows read in batches from one open of the file equal numpy's whole load."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (37, 6, 5, 3), dtype=np.uint8)
    path = tmp_path / "b.npz"
    save = np.savez_compressed if compressed else np.savez
    save(path, labels=np.arange(37), arr_0=x)  # another member first
    whole = np.load(path)["arr_0"]
    af = ArrayFile(path)
    assert af.shape("arr_0") == x.shape and af.dtype("arr_0") == np.uint8
    for bs in (1, 7, 37, 100):
        np.testing.assert_array_equal(np.concatenate(list(af.iter_rows("arr_0", 0, 37, bs))), whole)
    np.testing.assert_array_equal(np.concatenate(list(af.iter_rows("arr_0", 20, 25, 2))), x[20:25])


def test_streaming_npy_version_2_and_errors(tmp_path):
    x = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    path = tmp_path / "v2.npz"
    with zipfile.ZipFile(path, "w") as zf, zf.open("arr_0.npy", "w") as fh:
        np.lib.format.write_array(fh, x, version=(2, 0))
    np.testing.assert_array_equal(next(ArrayFile(path).iter_rows("arr_0", 0, 4, 4)), x)
    with pytest.raises(FidevalError, match="no key 'images'"):
        ArrayFile(path).array("images")
    # Truncated members: the header promises more bytes than the member holds.
    buf = io.BytesIO()
    np.lib.format.write_array(buf, x)
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        short = tmp_path / f"short{method}.npz"
        with zipfile.ZipFile(short, "w", compression=method) as zf:
            zf.writestr("arr_0.npy", buf.getvalue()[:-5])
        with pytest.raises(FidevalError, match="truncated"):
            list(ArrayFile(short).iter_rows("arr_0", 0, 4, 2))
    fortran = tmp_path / "f.npz"
    np.savez(fortran, np.asfortranarray(np.zeros((3, 4, 5, 3), np.uint8)))
    with pytest.raises(FidevalError, match="Fortran"):
        list(ArrayFile(fortran).iter_rows("arr_0", 0, 3, 2))
    not_zip = tmp_path / "x.npz"
    not_zip.write_bytes(b"hello")
    with pytest.raises(FidevalError, match=r"x.npz: not a statistics file or array archive"):
        ArrayFile(not_zip)


# --------------------------------------------------------------------------- IS and sFID order


def test_adm_inception_score_splits_of_5000():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (12345, 20)).astype(np.float32)
    value, per_split = adm_inception_score(logits)
    assert len(per_split) == 3  # 5000, 5000, 2345 in file order
    assert value == pytest.approx(np_inception_score(logits), rel=1e-12)
    assert per_split[2] == pytest.approx(np_inception_score(logits[10000:]), rel=1e-12)
    # One sample alone in the last split scores exactly 1 (ADM keeps it).
    assert adm_inception_score(logits[:5001])[1][1] == pytest.approx(1.0, abs=1e-12)


def test_spatial_features_are_channels_last():
    rng = np.random.default_rng(3)
    out = rng.normal(size=(2, 192, 17, 17)).astype(np.float32)
    got = spatial_hwc(torch.from_numpy(out)).numpy()
    expected = np.empty((2, 2023), np.float32)
    for h in range(17):
        for w in range(17):
            for c in range(7):
                expected[:, (h * 17 + w) * 7 + c] = out[:, c, h, w]
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, out[:, :7].reshape(2, -1))  # CHW is another order


def test_chw_flatten_gives_another_sfid_against_stored_statistics():
    # Channel-dependent maps: the channels differ in level, so the order of the
    # coordinates matters once one side's statistics are stored channels-last.
    rng = np.random.default_rng(6)
    scale = np.ones(192, np.float32)
    scale[:7] = [0.2, 5.0, 1.0, 3.0, 0.5, 8.0, 2.0]
    scale = scale[None, :, None, None]

    def maps(n, shift):  # channel level `scale`, small spatial noise
        return torch.from_numpy(scale + 0.1 * rng.random((n, 192, 17, 17), np.float32) + shift)

    ref, smp = maps(12, 0.0), maps(10, 0.1)
    ref_hwc = spatial_hwc(ref).numpy().astype(np.float64)
    stored = (ref_hwc.mean(0), np.cov(ref_hwc, rowvar=False))  # what a reference file holds
    smp_hwc = spatial_hwc(smp).numpy().astype(np.float64)
    smp_chw = smp[:, :7].reshape(10, -1).numpy().astype(np.float64)

    def sfid(x):
        return frechet_details(x.mean(0), np.cov(x, rowvar=False), *stored, n1=10, n2=12).value

    right, wrong = sfid(smp_hwc), sfid(smp_chw)
    assert wrong > 10 * right


# --------------------------------------------------------------------------- manifolds


def _feature_sets():
    rng = np.random.default_rng(4)
    x = rng.gamma(1.0, 0.3, (70, 64)).astype(np.float32)
    y = (rng.gamma(1.0, 0.3, (90, 64)) * 1.1).astype(np.float32)
    return x, y


@pytest.mark.parametrize("profile", ["adm", "exact"])
def test_precision_recall_matches_brute_force(profile):
    x, y = _feature_sets()
    p, r, rx = np_pr(x, y, profile)
    out = precision_recall(x, y, profile=profile)
    assert (out["precision"], out["recall"]) == (p, r)
    assert 0.0 < p < 1.0 and 0.0 < r < 1.0
    radii = manifold_radii(x, profile=profile)
    if profile == "adm":
        np.testing.assert_array_equal(radii, rx)  # float16 values: identical
    else:  # the direct formula's summation order differs from numpy's by an ulp
        np.testing.assert_allclose(radii, rx, rtol=1e-13)


@pytest.mark.parametrize("profile", ["adm", "exact"])
def test_precision_recall_ties_and_duplicates(profile):
    # Small integers: every distance is exact in any arithmetic, ties are everywhere,
    # and `≤ radius` decides them. Samples include copies of reference points.
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, (60, 6)).astype(np.float32)
    y = np.concatenate([rng.integers(0, 5, (40, 6)), x[:10]]).astype(np.float32)
    p, r, _ = np_pr(x, y, profile)
    out = precision_recall(x, y, profile=profile)
    assert (out["precision"], out["recall"]) == (p, r)


def test_adm_clamps_before_the_overflow_test():
    """An overflowing 2·uᵀv with finite norms gives −inf, which ADM's max(D, 0) turns into
    0 before its finiteness test: the block stays float16 (no float32 fallback)."""
    x = np.array([[190.0, 0.0], [191.0, 1.0], [189.0, 2.0], [192.0, 0.5], [190.5, 1.5]])
    y = x[::-1] + 0.25
    assert np.isinf(np.float16(2) * np.float16(189.0 * 189.0))  # 2·uᵀv overflows float16
    assert np.isfinite(np.float16(192.5**2 + 2.25**2))  # the norms do not
    p, r, _ = np_pr(x.astype(np.float32), y.astype(np.float32), "adm")
    out = precision_recall(x.astype(np.float32), y.astype(np.float32), profile="adm")
    assert (out["precision"], out["recall"]) == (p, r)
    assert out["float32_fallback_blocks"] == 0


def test_adm_float16_overflow_falls_back_per_block():
    x, y = _feature_sets()
    x[5, 3], x[40, 0], y[70, 1] = 300.0, 290.0, 400.0  # squares overflow float16
    block = 16
    p, r, rx = np_pr(x, y, "adm", block=block)
    out = precision_recall(x, y, profile="adm", block_size=block)
    assert (out["precision"], out["recall"]) == (p, r)
    assert out["float32_fallback_blocks"] > 0
    np.testing.assert_array_equal(manifold_radii(x, block_size=block), rx)
    # Blocks without the large rows stay float16: not the same as all-float32.
    assert out["float32_fallback_blocks"] < 3 * (90 // block + 1) ** 2


@pytest.mark.parametrize("profile", ["adm", "exact"])
def test_manifold_tiling_does_not_change_results(profile, monkeypatch):
    x, y = _feature_sets()
    before = precision_recall(x, y, profile=profile)
    radii = manifold_radii(y, profile=profile)
    monkeypatch.setattr(adm, "TILE_BYTES", 8 * 64 * 7)  # tiles of a few rows
    assert precision_recall(x, y, profile=profile) == before
    np.testing.assert_array_equal(manifold_radii(y, profile=profile), radii)


def test_manifold_errors():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(FidevalError, match="at least 4"):
        manifold_radii(x)
    with pytest.raises(FidevalError, match="profile"):
        manifold_radii(np.zeros((5, 4), np.float32), profile="fp8")
    bad = np.ones((6, 4), np.float32)
    bad[2, 1] = np.nan
    with pytest.raises(FidevalError, match=r"\(rows 2\); expected finite features"):
        precision_recall(bad, np.ones((6, 4), np.float32))


# --------------------------------------------------------------------------- network parity


def _weights(tmp_path_factory) -> Path:
    """Seeded random weights with a usable classifier: fc rows orthogonal to the common
    direction of the random network's features, scaled so the Inception Score moves."""
    sd = seeded_random_state_dict(0)
    net = FIDInceptionV3()
    net.load_state_dict(sd)
    probe = np.random.default_rng(9).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        m = net(adm_preprocess(probe), (2048,))[2048].mean(0)
    m = m / m.norm()
    w = sd["fc.weight"]
    sd["fc.weight"] = 300.0 * (w - (w @ m)[:, None] * m[None, :])
    path = tmp_path_factory.mktemp("adm_weights") / "inception_random.pth"
    torch.save(sd, path)
    return path


def _images(n: int, seed: int) -> np.ndarray:
    """Varied 32×32 images: noise, flat colours, gradients, blocky noise."""
    rng = np.random.default_rng(seed)
    g = np.linspace(0, 255, 32)
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            im = rng.integers(0, 256, (32, 32, 3))
        elif kind == 1:
            im = np.broadcast_to(rng.integers(0, 256, 3), (32, 32, 3))
        elif kind == 2:
            im = np.stack(
                [
                    np.add.outer(g, g * rng.random()) / 2,
                    np.add.outer(g[::-1], g) / 2,
                    np.full((32, 32), rng.integers(256)),
                ],
                -1,
            )
        else:
            im = np.clip(rng.normal(128, 80, (8, 8, 3)).repeat(4, 0).repeat(4, 1), 0, 255)
        out.append(np.asarray(im).astype(np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """Both networks on the same images: fideval's (contiguous and channels-last) and
    torch-fidelity's with a hook on Mixed_6d.branch1x1."""
    tfi = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    weights = _weights(tmp_path_factory)
    ref, smp = _images(8, 10), _images(10, 11)
    ref_tf = tfi.FeatureExtractorInceptionV3(
        "inception-v3-compat",
        ["2048", "logits_unbiased"],
        feature_extractor_weights_path=str(weights),
    )
    captured = {}
    ref_tf.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: captured.__setitem__("s", o))

    def tf_features(images):
        with torch.no_grad():
            pool, logits = ref_tf(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
        s = captured["s"][:, :7].permute(0, 2, 3, 1).reshape(len(images), -1)  # HWC
        chw = captured["s"][:, :7].reshape(len(images), -1)
        return {
            "pool": pool.numpy(),
            "spatial": s.numpy(),
            "chw": chw.numpy(),
            "logits": logits.numpy(),
        }

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random weights are not the official file
        contiguous = InceptionExtractor(2048, weights=weights, device="cpu", channels_last=False)
        default = InceptionExtractor(2048, weights=weights, device="cpu")
    return {
        "weights": weights,
        "ref": ref,
        "smp": smp,
        "tf_ref": tf_features(ref),
        "tf_smp": tf_features(smp),
        "contiguous": contiguous,
        "default": default,
    }


@pytest.mark.slow
def test_features_match_torch_fidelity(parity):
    imgs = np.concatenate([parity["ref"], parity["smp"]])
    tf = {
        k: np.concatenate([parity["tf_ref"][k], parity["tf_smp"][k]])
        for k in ("pool", "spatial", "logits")
    }
    with ADMInception(parity["contiguous"]) as net:
        out = {k: v.numpy() for k, v in net(imgs).items()}
    for key in ("pool", "spatial"):  # same kernels: bit for bit (reached: 0)
        np.testing.assert_array_equal(out[key], tf[key])
    # Logits: pool·Wᵀ by F.linear here, by x.mm(W.T) there (other GEMM kernels), and the
    # test's W is orthogonal to the features' common direction, so the float32 sum
    # cancels ~100×: reached ≈8e-5 on logits of size ≈2.
    np.testing.assert_allclose(out["logits"], tf["logits"], rtol=0, atol=1e-3)
    assert np.std(tf["logits"], axis=0).max() > 0.1  # the classifier separates images
    ours, theirs = adm_inception_score(out["logits"])[0], np_inception_score(tf["logits"])
    assert ours == pytest.approx(theirs, rel=1e-6)


@pytest.mark.slow
def test_default_layout_features_within_tolerance(parity):
    imgs = parity["smp"][:4]
    tf = {k: v[:4] for k, v in parity["tf_smp"].items()}
    with ADMInception(parity["default"]) as net:
        out = {k: v.numpy() for k, v in net(imgs).items()}
    # channels-last kernels: reached ≈2e-7 (pool_3 ≈ 0.9) and ≈5e-7 (sFID features).
    np.testing.assert_allclose(out["pool"], tf["pool"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["spatial"], tf["spatial"], rtol=0, atol=1e-5)
    # An FD between halves amplifies feature round-off ≈100× (see the module doc).
    for key in ("pool", "spatial"):
        ours, theirs = np_fd(out[key][::2], out[key][1::2]), np_fd(tf[key][::2], tf[key][1::2])
        assert ours == pytest.approx(theirs, rel=1e-5)


def _write(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.slow
def test_suite_parity_and_stored_statistics(parity, tmp_path):
    """adm_suite on two files vs the five numbers from torch-fidelity's features; then the
    stored-statistics path (both sides) gives the computed path's FID and sFID."""
    ref_p = _write(tmp_path / "ref.npz", arr_0=parity["ref"])
    smp_p = tmp_path / "smp.npz"
    np.savez_compressed(smp_p, arr_0=parity["smp"])
    out_stats = tmp_path / "sample_stats.npz"
    ext = parity["contiguous"]
    res = adm_suite(ref_p, smp_p, extractor=ext, batch_size=3, save_stats=out_stats)
    tr, ts = parity["tf_ref"], parity["tf_smp"]
    assert res["N"] == 10 and res["M"] == 8
    assert res["fid"] == pytest.approx(np_fd(ts["pool"], tr["pool"]), rel=1e-6)
    assert res["sfid"] == pytest.approx(np_fd(ts["spatial"], tr["spatial"]), rel=1e-6)
    assert res["inception_score"] == pytest.approx(np_inception_score(ts["logits"]), rel=1e-6)
    assert res["inception_score"] > 1.01
    p, r, _ = np_pr(tr["pool"], ts["pool"], "adm")
    assert (res["precision"], res["recall"]) == (p, r)
    assert res["provenance"]["manifold"]["profile"] == "adm"

    # Stored statistics written in ADM's layout, float64, with n.
    saved = np.load(out_stats)
    assert {"mu", "sigma", "mu_s", "sigma_s", "n"} <= set(saved.files)
    assert saved["sigma_s"].shape == (2023, 2023) and saved["mu"].dtype == np.float64
    np.testing.assert_allclose(saved["mu_s"], ts["spatial"].astype(np.float64).mean(0), atol=1e-7)

    # Reference with stored statistics (HWC, from torch-fidelity's features) + arr_0.
    gp, gs = GaussianStats(2048), GaussianStats(2023)
    gp.update(tr["pool"])
    gs.update(tr["spatial"])
    ref_stats = {"mu": gp.mean, "sigma": gp.cov, "mu_s": gs.mean, "sigma_s": gs.cov}
    ref2 = _write(tmp_path / "ref2.npz", arr_0=parity["ref"], n=np.int64(8), **ref_stats)
    smp2 = _write(tmp_path / "smp2.npz", arr_0=parity["smp"], **{k: saved[k] for k in saved.files})
    res2 = adm_suite(ref2, smp2, extractor=ext, batch_size=3)
    for key in ("fid", "sfid", "inception_score", "precision", "recall"):
        assert res2[key] == pytest.approx(res[key], rel=1e-12), key
    assert "stored" in res2["provenance"]["reference"]["statistics"]
    assert any("statistics stored in the sample file" in w for w in res2["warnings"])

    # The CHW trap: a channels-first sample against the stored HWC reference is far off.
    chw_sfid = np_fd(ts["chw"], tr["spatial"])
    assert abs(chw_sfid - res["sfid"]) > 0.5 * res["sfid"]

    # A reference with statistics only: FID/sFID as before, no precision/recall.
    ref3 = _write(tmp_path / "ref3.npz", n=np.int64(8), **ref_stats)
    res3 = adm_suite(ref3, smp_p, extractor=ext, manifold="exact")
    assert res3["fid"] == pytest.approx(res["fid"], rel=1e-12)
    assert res3["precision"] is None and res3["M"] == 0
    assert any("precision and recall" in w for w in res3["warnings"])


# --------------------------------------------------------------------------- files and CLI


def test_suite_file_errors(tmp_path):
    good = _write(tmp_path / "good.npz", arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    cases = {
        "float.npz": ({"arr_0": np.zeros((4, 8, 8, 3), np.float32)}, "expected uint8 images"),
        "gray.npz": ({"arr_0": np.zeros((4, 8, 8), np.uint8)}, "expected uint8 images"),
        "three.npz": ({"arr_0": np.zeros((3, 8, 8, 3), np.uint8)}, "at least 4"),
        "mu_only.npz": (
            {"arr_0": np.zeros((4, 8, 8, 3), np.uint8), "mu": np.zeros(2048)},
            "not 'sigma'",
        ),
        "bad_shape.npz": (
            {
                "mu": np.zeros(2048),
                "sigma": np.eye(2048),
                "mu_s": np.zeros(2048),
                "sigma_s": np.eye(2023),
            },
            "mu_s has",
        ),
    }
    for name, (arrays, match) in cases.items():
        bad = _write(tmp_path / name, **arrays)
        with pytest.raises(FidevalError, match=match):
            adm_suite(good, bad)
        with pytest.raises(FidevalError, match=match):
            adm_suite(bad, good)
    stats_only = _write(tmp_path / "stats.npz", x=np.zeros(3))
    with pytest.raises(FidevalError, match="needs its images"):
        adm_suite(good, stats_only)
    with pytest.raises(FidevalError, match="manifold"):
        adm_suite(good, good, manifold="fp16")


@pytest.mark.slow
def test_cli_adm(parity, tmp_path, capsys):
    ref_p = _write(tmp_path / "ref.npz", arr_0=parity["ref"][:4])
    smp_p = _write(tmp_path / "smp.npz", arr_0=parity["smp"][:5])
    w = str(parity["weights"])
    assert (
        main(
            [
                "adm",
                str(ref_p),
                str(smp_p),
                "--weights",
                w,
                "--device",
                "cpu",
                "--no-progress",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    for key in (
        "inception_score",
        "fid",
        "sfid",
        "precision",
        "recall",
        "N",
        "M",
        "provenance",
        "warnings",
    ):
        assert key in out
    assert out["N"] == 5 and out["M"] == 4
    assert (
        main(["adm", str(ref_p), str(smp_p), "--weights", w, "--device", "cpu", "--no-progress"])
        == 0
    )
    text = capsys.readouterr().out.splitlines()
    assert [ln.split(":")[0] for ln in text] == [
        "Inception Score",
        "FID",
        "sFID",
        "Precision",
        "Recall",
    ]
    assert float(text[1].split(":")[1]) == pytest.approx(out["fid"], rel=1e-7)


def test_cli_adm_errors_are_one_line(tmp_path, capsys):
    ref_p = _write(tmp_path / "ref.npz", arr_0=np.zeros((4, 8, 8, 3), np.uint8))
    smp_p = _write(tmp_path / "smp.npz", arr_0=np.zeros((5, 8, 8, 3), np.uint8))
    # Checked before any weights or image are read.
    assert main(["adm", str(ref_p), str(tmp_path / "missing.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.npz: no such file" in err
    assert main(["adm", str(ref_p), str(smp_p), "--save-stats", str(tmp_path / "out.txt")]) == 2
    assert ".npz" in capsys.readouterr().err
    assert main(["adm", str(ref_p), str(smp_p), "--weights", str(tmp_path / "none.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.pth does not exist" in err
