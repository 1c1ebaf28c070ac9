"""On a CUDA device (skipped elsewhere): features equal the CPU's, statistics stay float64
on the device with no per-batch host synchronisation, and TF32 never touches them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fideval
from helpers import features, images

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_features_equal_the_cpu_within_float32_round_off():
    cpu = fideval.extractor("digits", device="cpu")
    gpu = fideval.extractor("digits", device="cuda")
    x = torch.from_numpy(images(16, (8, 8))).permute(0, 3, 1, 2).contiguous()
    want, got = cpu(x), gpu(x).cpu()
    assert (got - want).abs().max().item() <= 64 * 2.0**-24 * want.abs().max().item()


def test_statistics_stay_float64_on_the_device_without_host_syncs():
    x = torch.from_numpy(features(4096, 64)).float().cuda()
    s = fideval.GaussianStats(device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        for chunk in x.split(512):
            s.update(chunk)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert s.mean_tensor.device.type == "cuda" and s.mean_tensor.dtype == torch.float64
    assert s.cov_tensor.dtype == torch.float64
    ref = x.double().cpu().numpy()
    np.testing.assert_allclose(s.cov, np.cov(ref, rowvar=False), rtol=1e-10, atol=1e-12)


def test_tf32_never_reaches_the_statistics():
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True  # a user's global setting
    try:
        x = torch.from_numpy(features(2048, 256, seed=3) * 100 + 1e3).float().cuda()
        s = fideval.GaussianStats(device="cuda")
        s.update(x)
        ref = np.cov(x.double().cpu().numpy(), rowvar=False)
        np.testing.assert_allclose(s.cov, ref, rtol=1e-10, atol=1e-8)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
