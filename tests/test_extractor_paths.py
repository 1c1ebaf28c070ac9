"""Registry extractors through the one source path and the Evaluator (random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import fideval
from fideval.features.dinov2 import seeded_random_state_dict
from fideval.train import EveryNSteps, FIDEvaluator


@pytest.fixture(scope="module")
def dino():
    return fideval.extractor(
        "dinov2-vitb14", weights=seeded_random_state_dict("vitb14", seed=1), device="cpu"
    )


@pytest.fixture
def mixed_folder(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [(40, 30), (28, 28), (50, 44), (33, 61)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    return tmp_path


@pytest.mark.slow
def test_folder_of_mixed_sizes_through_dinov2_equals_per_image_features(dino, mixed_folder):
    """The workers run the extractor's own preprocessing per image (the fast path)."""
    stats, meta = fideval.streaming.statistics(mixed_folder, dino, batch_size=3, num_workers=1)
    per_image = (
        torch.cat(
            [
                dino(
                    torch.from_numpy(np.array(Image.open(mixed_folder / f"{i}.png"))).permute(
                        2, 0, 1
                    )[None]
                )
                for i in range(4)
            ]
        )
        .double()
        .numpy()
    )
    np.testing.assert_allclose(stats.mean, per_image.mean(0), rtol=1e-5, atol=1e-6)
    assert meta["extractor"] == "dinov2-vitb14" and meta["profile"] == "edm2" and meta["n"] == 4


@pytest.mark.slow
def test_evaluator_with_a_named_extractor(dino, tmp_path):
    """FIDEvaluator(extractor=fideval.extractor("dinov2-vitb14", …)) in a training loop."""
    g = torch.Generator().manual_seed(0)
    reference = torch.rand(8, 3, 28, 28, generator=g)

    def sampler(n: int) -> torch.Tensor:
        return torch.rand(n, 3, 28, 28, generator=g) ** 2

    ev = FIDEvaluator(
        sampler,
        reference,
        dino,
        schedule=EveryNSteps(1, n=8),
        batch_size=4,
        cache_dir="",
        groups=4,
        target_n=16,
    )
    record = ev.evaluate(1, n=8)
    ref_feats = dino(reference).double()
    assert ev.reference.record.n == 8
    np.testing.assert_allclose(
        ev.reference.record.mu, ref_feats.mean(0).numpy(), rtol=1e-5, atol=1e-6
    )
    assert record.n == 8 and np.isfinite(record.fid)
    assert ev.provenance()["extractor"] == "dinov2-vitb14"
