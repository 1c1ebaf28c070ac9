"""fideval.fid, the FID metric object, the extractor registry and contract."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from PIL import Image

import fideval
import fideval.api
from fideval.errors import FidevalError, IncompatibleStatsError
from fideval.io.statsfile import save_stats
from fideval.stats import GaussianStats


@pytest.fixture
def feats():
    rng = np.random.default_rng(4)
    mix = rng.standard_normal((6, 6))
    return rng.standard_normal((250, 6)) @ mix, rng.standard_normal((180, 6)) @ mix + 0.7


def test_doctests():
    assert doctest.testmod(fideval.api).failed == 0
    assert doctest.testmod(fideval.streaming).failed == 0


def test_fid_of_features_stats_and_files_agree(tmp_path, feats):
    x, y = feats
    exact = fideval.frechet_from_features(x, y).value
    assert fideval.fid(x, y).value == exact
    assert fideval.fid(torch.from_numpy(x), torch.from_numpy(y)).value == exact
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    assert fideval.fid(tmp_path / "x.npy", str(tmp_path / "y.npy")).value == exact
    sx, sy = GaussianStats(), GaussianStats()
    sx.update(x)
    sy.update(y)
    by_stats = fideval.fid(sx, sy)
    assert by_stats.method.endswith("eigvalsh") and by_stats.n1 == 250 and by_stats.n2 == 180
    assert by_stats.value == pytest.approx(exact, rel=1e-10)
    save_stats(tmp_path / "y.npz", sy)
    assert fideval.fid(x, tmp_path / "y.npz").value == pytest.approx(exact, rel=1e-10)


def test_fid_refuses_mismatched_provenance_unless_forced(tmp_path, feats):
    x, y = feats
    sx, sy = GaussianStats(), GaussianStats()
    sx.update(x)
    sy.update(y)
    save_stats(tmp_path / "a.npz", sx, {"extractor": "inception-v3-fid", "dims": 6})
    save_stats(tmp_path / "b.npz", sy, {"extractor": "dinov2-vitl14", "dims": 6})
    with pytest.raises(IncompatibleStatsError, match="extractor"):
        fideval.fid(tmp_path / "a.npz", tmp_path / "b.npz")
    forced = fideval.fid(tmp_path / "a.npz", tmp_path / "b.npz", force=True)
    want = fideval.frechet_details(sx.mean, sx.cov, sy.mean, sy.cov, n1=sx.n, n2=sy.n)
    assert forced.value == want.value
    assert any("compared despite different pipelines" in w for w in forced.warnings)


def test_metric_streaming_equals_one_shot(feats):
    x, y = feats
    m = fideval.FID()
    for i in range(0, 250, 60):
        m.update(x[i : i + 60], real=True)
    for i in range(0, 180, 50):
        m.update(y[i : i + 50], real=False)
    r = m.compute()
    assert r.value == pytest.approx(fideval.frechet_from_features(y, x).value, rel=1e-12)
    assert r.method == "features-nuclear" and r.n1 == 180 and r.n2 == 250


def test_metric_merge_state_dict_and_reset(feats):
    x, y = feats
    a, b = fideval.FID(exact=False), fideval.FID(exact=False)
    a.update(x[:100], real=True)
    a.update(y[:90], real=False)
    b.update(x[100:], real=True)
    b.update(y[90:], real=False)
    a.merge(b)
    want = fideval.frechet_details(
        y.mean(0), np.cov(y, rowvar=False), x.mean(0), np.cov(x, rowvar=False), n1=180, n2=250
    ).value
    assert a.compute().value == pytest.approx(want, rel=1e-10)
    c = fideval.FID(exact=False)
    c.load_state_dict(a.state_dict())
    assert c.compute().value == pytest.approx(a.compute().value, rel=1e-12)
    c.reset(keep_reference=True)
    assert c.real.n == 250 and c.fake.n == 0
    c.update(y, real=False)
    assert c.compute().value == pytest.approx(want, rel=1e-10)
    c.reset(keep_reference=False)
    assert c.real.n == 0


def test_metric_with_a_fixed_reference_and_estimate(tmp_path, feats):
    x, y = feats
    sx = GaussianStats()
    sx.update(x)
    save_stats(tmp_path / "ref.npz", sx)
    m = fideval.FID(reference=tmp_path / "ref.npz", groups=4)
    m.update(y, real=False)
    r = m.compute()
    assert r.value == pytest.approx(
        fideval.frechet_details(
            y.mean(0), np.cov(y, rowvar=False), sx.mean, sx.cov, n1=180, n2=250
        ).value,
        rel=1e-10,
    )
    est = m.estimate(target_n=1000)
    assert est.fid == pytest.approx(r.value, rel=1e-9)
    with pytest.raises(FidevalError, match="reference was given up front"):
        m.update(x, real=True)
    with pytest.raises(FidevalError, match="groups=K"):
        fideval.FID().estimate()


def test_metric_errors():
    m = fideval.FID()
    with pytest.raises(FidevalError, match=r"expected features \(B, d\)"):
        m.update(torch.zeros(2, 3, 8, 8), real=True)
    with pytest.raises(FidevalError, match="at least 2 fake samples"):
        m.compute()
    with pytest.raises(FidevalError, match="zero width"):
        fideval.FID(reference=np.zeros((5, 0)))


def test_metric_reference_from_samples_equals_updates():
    """FID(reference=samples) goes through the one path and equals feeding them as real."""
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(40, 5)), rng.normal(size=(30, 5)) + 0.5
    given = fideval.FID(reference=real, exact=False)
    given.update(fake, real=False)
    fed = fideval.FID(exact=False)
    fed.update(real, real=True)
    fed.update(fake, real=False)
    assert given.compute().value == pytest.approx(fed.compute().value, rel=1e-12)


def test_metric_with_an_image_extractor():
    """Images through the registry's digits CNN equal its features fed directly."""
    ext = fideval.extractor("digits")
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(40, 1, 8, 8, generator=g), torch.rand(30, 1, 8, 8, generator=g) ** 2
    m = fideval.FID("digits")
    m.update(real, real=True)
    m.update(fake, real=False)
    want = fideval.frechet_from_features(ext(fake), ext(real)).value
    assert m.compute().value == pytest.approx(want, rel=1e-12)


def test_registry():
    assert {"inception", "dinov2-vitl14", "dinov2-vitb14", "clip-vitl14-336", "digits"} <= set(
        fideval.extractor_names()
    )
    with pytest.raises(FidevalError, match="unknown extractor 'nope'; expected one of"):
        fideval.extractor("nope")
    with pytest.raises(
        FidevalError, match=r"extractor .digits. does not take weights=; it takes device="
    ):
        fideval.extractor("digits", weights="x.pth")
    ext = fideval.extractor("digits")
    assert isinstance(ext, fideval.Extractor) and isinstance(ext, torch.nn.Module)
    prov = ext.provenance()
    assert {"extractor", "weights_sha256", "dims", "profile"} <= set(prov)


def test_any_module_is_wrapped_into_the_contract():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 5))
    ext = fideval.as_extractor(net, id="my-net")
    x = torch.randint(0, 256, (4, 3, 4, 4), dtype=torch.uint8)
    torch.testing.assert_close(ext(x), net(x.float() / 255).detach(), atol=1e-6, rtol=0)
    prov = ext.provenance()
    assert prov["extractor"] == "my-net" and prov["dims"] == 5 and len(prov["weights_sha256"]) == 64
    ext.train()
    assert not ext.training
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 5))
    assert fideval.as_extractor(other).provenance()["weights_sha256"] != prov["weights_sha256"]
    with pytest.raises(FidevalError, match="expected an extractor"):
        fideval.as_extractor(42)
    with pytest.raises(FidevalError, match=r"float images in \[0, 1\]"):
        ext(torch.full((1, 3, 4, 4), 2.0))


def test_resolve_source_kinds(tmp_path, feats):
    x, _ = feats
    rs = fideval.streaming.resolve_source
    assert rs(x).kind == "features" and rs(torch.zeros(3, 3, 8, 8)).kind == "images"
    np.save(tmp_path / "f.npy", x)
    assert rs(tmp_path / "f.npy").form == "feature-file"
    (tmp_path / "d").mkdir()
    with pytest.raises(FidevalError, match="no image files in folder"):
        rs(tmp_path / "d")  # an empty folder is refused at resolution, before any network
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "d" / "a.png")
    assert rs(tmp_path / "d").form == "folder"
    with pytest.raises(FidevalError, match="no such file or folder"):
        rs(tmp_path / "missing")
    with pytest.raises(FidevalError, match="expected 2-D features"):
        rs(np.zeros(5))
