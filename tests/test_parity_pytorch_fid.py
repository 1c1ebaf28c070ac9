"""Parity with pytorch-fid: same weights file -> same features, statistics and FID.

pytorch-fid's weights cannot be downloaded here, so both implementations load the
same file of seeded random (well-scaled) weights; pytorch-fid gets it through its
monkeypatched URL loader. Skipped when pytorch-fid / torchvision are missing.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

pfi = pytest.importorskip("pytorch_fid.inception")
pytest.importorskip("torchvision")
fid_score = pytest.importorskip("pytorch_fid.fid_score")

import fideval  # noqa: E402
from fideval.cli import main  # noqa: E402
from fideval.features.inception import (  # noqa: E402
    LOGITS,
    InceptionExtractor,
    seeded_random_state_dict,
)
from fideval.features.preprocess import preprocess_batch  # noqa: E402
from fideval.streaming import statistics as stats_from_images  # noqa: E402

DIMS = (64, 192, 768, 2048)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "random-fid-inception.pth"
    torch.save(seeded_random_state_dict(11), path)
    return path


@pytest.fixture
def pytorch_fid_weights(weights_file, monkeypatch):
    """pytorch-fid's loader returns our file instead of downloading its weights."""

    def load(url, *args, **kwargs):
        assert url == pfi.FID_WEIGHTS_URL
        return torch.load(weights_file, weights_only=True)

    monkeypatch.setattr(pfi, "load_state_dict_from_url", load)
    return weights_file


def _ours(weights_file, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not the standard weights"
        return InceptionExtractor(2048, weights=weights_file, device="cpu", **kw)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 32, 32, generator=g)  # images in [0, 1], as pytorch-fid takes


@pytest.mark.slow
def test_features_and_logits_equal_pytorch_fid(pytorch_fid_weights, inputs):
    ref_net = pfi.InceptionV3(output_blocks=[0, 1, 2, 3]).eval()
    full = pfi.fid_inception_v3().eval()  # torchvision Inception with the FID blocks: logits
    with torch.no_grad():
        ref_blocks = ref_net(inputs)
        x = 2 * F.interpolate(inputs, size=(299, 299), mode="bilinear", align_corners=False) - 1
        ref_logits = full(x)
    ref = {
        d: F.adaptive_avg_pool2d(b, (1, 1)).flatten(1)
        for d, b in zip(DIMS, ref_blocks, strict=True)
    }
    ref[LOGITS] = ref_logits

    prepared = preprocess_batch(inputs, "pytorch-fid")
    assert torch.equal(prepared, x)
    for channels_last in (False, True):
        ours = _ours(pytorch_fid_weights, channels_last=channels_last)
        out = ours.outputs(prepared, (*DIMS, LOGITS))
        for key, value in ref.items():
            assert out[key].shape == value.shape
            diff = (out[key] - value).abs().max().item()
            assert diff <= 1e-5, (channels_last, key, diff)


def _write_folder(path, n, seed, shift):
    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = np.clip(rng.normal(100 + shift, 40 + shift, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(path / f"{i:04d}.png")
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    return _write_folder(root / "a", 67, 0, 0), _write_folder(root / "b", 68, 1, 40)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")
def test_fid_of_two_folders_equals_pytorch_fid(pytorch_fid_weights, folders, capsys):
    """dims=64 with N > 64: full-rank covariances, so scipy's sqrtm is reliable."""
    a, b = folders
    ref = fid_score.calculate_fid_given_paths(
        [str(a), str(b)], batch_size=50, device="cpu", dims=64, num_workers=0
    )
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(
            [
                "fid",
                str(a),
                str(b),
                "--dims",
                "64",
                "--weights",
                str(pytorch_fid_weights),
                "--profile",
                "pytorch-fid",
                "--num-workers",
                "0",
                "--no-progress",
                "--json",
            ]
        )
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_a"] == 67 and res["n_b"] == 68
    assert ref > 0.1
    assert res["fid"] == pytest.approx(ref, rel=1e-4)
    # The Python entry point is the same path: fideval.fid == `fideval fid`, exactly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = fideval.fid(a, b, dims=64, weights=pytorch_fid_weights, num_workers=0)
    assert r.value == res["fid"] and r.method == res["method"] == "features-nuclear"


@pytest.mark.slow
def test_2048_statistics_equal_pytorch_fid(pytorch_fid_weights, folders):
    """Full network, pool3: mu and sigma of a few images (no sqrtm at d=2048: too slow)."""
    a, _ = folders
    files = sorted(a.glob("*.png"))[:6]
    sub = a.parent / "a6"
    sub.mkdir()
    for f in files:
        (sub / f.name).write_bytes(f.read_bytes())
    model = pfi.InceptionV3([3]).eval()
    mu, sigma = fid_score.calculate_activation_statistics(
        sorted(sub.glob("*.png")), model, batch_size=4, dims=2048, device="cpu", num_workers=0
    )
    stats, meta = stats_from_images(
        sub, extractor=_ours(pytorch_fid_weights), batch_size=4, num_workers=0, progress=False
    )
    assert stats.n == 6 and meta["dims"] == 2048 and meta["profile"] == "pytorch-fid"
    assert np.max(np.abs(stats.mean - mu)) <= 1e-5
    assert np.max(np.abs(stats.cov - sigma)) <= 1e-5
