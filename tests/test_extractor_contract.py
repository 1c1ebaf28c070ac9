"""The extractor contract, checked over every registered extractor with seeded random
weights (the published weights cannot be downloaded here).

For each name: the builder's dims, float32 (B, d) output, eval mode that cannot be left,
the provenance keys every comparison guards on, uint8 and float [0, 1] inputs giving the
same features, batch-size independence, and the streamed path (preprocessing in the
workers, then ``features``) equal to ``forward``.

Bound: features are float32; batching changes only the GEMM/convolution blocking, so rows
may differ by a few float32 ulps of the largest feature magnitude. We allow
``64 · 2⁻²⁴ · max|f|`` per entry (measured: 0 to 4 ulps).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import fideval
from fideval.features.base import REQUIRED_PROVENANCE
from fideval.features.registry import registered
from helpers import images, inception_weights


def _inception(tmp_path):
    return {"weights": inception_weights(tmp_path / "inception.pth"), "device": "cpu"}


def _dinov2(arch):
    def options(tmp_path):
        from fideval.features.dinov2 import seeded_random_state_dict

        return {"weights": seeded_random_state_dict(arch, seed=3), "device": "cpu"}

    return options


def _clip(tmp_path):
    from fideval.features.clip import seeded_random_state_dict

    return {"weights": seeded_random_state_dict(seed=4, prefix="visual."), "device": "cpu"}


#: How to build each registered extractor offline. A new registration must add itself
#: here (test_every_registered_extractor_is_covered fails until it does).
RANDOM_OPTIONS = {
    "inception": (_inception, False),
    "dinov2-vitb14": (_dinov2("vitb14"), True),
    "dinov2-vitl14": (_dinov2("vitl14"), True),
    "clip-vitl14-336": (_clip, True),
    "digits": (lambda tmp_path: {"device": "cpu"}, False),
}

SIZES = {"digits": (8, 8)}


def test_every_registered_extractor_is_covered():
    assert sorted(RANDOM_OPTIONS) == fideval.extractor_names()


def _ulp_bound(reference: torch.Tensor) -> float:
    return 64 * 2.0**-24 * float(reference.abs().max())


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if RANDOM_OPTIONS[n][1] else n
        for n in sorted(RANDOM_OPTIONS)
    ],
)
def test_contract(name, tmp_path):
    spec = next(s for s in registered() if s.name == name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights are not the published files
        ext = fideval.extractor(name, **RANDOM_OPTIONS[name][0](tmp_path))
    assert isinstance(ext, torch.nn.Module)
    assert ext.dims == spec.dims
    ext.train()
    assert not ext.training and not any(m.training for m in ext.modules())
    prov = ext.provenance()
    assert set(REQUIRED_PROVENANCE) <= set(prov)
    assert prov["dims"] == spec.dims and prov["profile"] == ext.profile

    u8 = torch.from_numpy(images(4, SIZES.get(name, (32, 32)), seed=7)).permute(0, 3, 1, 2)
    whole = ext(u8.contiguous())
    assert whole.shape == (4, spec.dims) and whole.dtype == torch.float32
    bound = _ulp_bound(whole)
    floats = ext(u8.float() / 255.0)
    assert (floats - whole).abs().max().item() <= bound  # uint8 and [0, 1] floats agree
    one_by_one = torch.cat([ext(u8[i : i + 1].contiguous()) for i in range(4)])
    assert (one_by_one - whole).abs().max().item() <= bound  # batch-size independence
    side = fideval.streaming.collect(
        u8.permute(0, 2, 3, 1).numpy(), ext, features="required", batch_size=3, num_workers=0
    )
    np.testing.assert_allclose(side.features, whole.numpy(), rtol=0, atol=bound)
