"""Schedules and the Evaluator refuse what would fail later, and say so at once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fideval.errors import FidevalError
from fideval.train import EveryNSteps, FIDEvaluator, Staged, WallClockBudget
from fideval.train.reference import compute_reference_stats
from fideval.train.schedule import Clock


class Proj(torch.nn.Module):
    """A fixed projection of 4×4 RGB images to 3-d features."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.randn(48, 3, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).float() @ self.w

    def provenance(self) -> dict:
        return {"extractor": "proj", "weights_sha256": "0", "dims": 3, "profile": "unit"}


def sampler(n: int) -> torch.Tensor:
    return torch.rand(n, 3, 4, 4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: WallClockBudget(0.1, mode="adaptive"),
        lambda: EveryNSteps(10, mode="adaptive"),
        lambda: EveryNSteps(10, mode="adaptive", tolerance=0.0),
        lambda: Staged(start=0, full_from=10, every=5, tolerance=-1.0),
    ],
)
def test_adaptive_without_tolerance_is_refused_at_construction(make):
    with pytest.raises(FidevalError, match="needs a tolerance > 0"):
        make()


def test_adaptive_with_tolerance_plans_it():
    clock = Clock(
        step=10,
        train_seconds=100.0,
        eval_seconds=0.0,
        seconds_per_sample=0.001,
        last_eval_step=None,
    )
    plan = WallClockBudget(0.1, mode="adaptive", tolerance=0.5).plan(clock)
    assert plan is not None and plan.mode == "adaptive" and plan.tolerance == 0.5
    assert EveryNSteps(10, mode="adaptive", tolerance=2.0).plan(clock).tolerance == 2.0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Staged(start=0, full_from=10, every=0), "every must be ≥ 1, got 0"),
        (lambda: Staged(start=20, full_from=10, every=5), "full_from=10 is before start=20"),
        (lambda: EveryNSteps(0), "every must be ≥ 1"),
        (lambda: EveryNSteps(5, n=0), "n must be ≥ 1"),
        (lambda: EveryNSteps(5, mode="fast"), "unknown mode 'fast'"),
        (lambda: WallClockBudget(0.1, min_samples=10, max_samples=5), "max_samples=5 < min"),
    ],
)
def test_bad_schedules_are_clear_errors(make, match):
    with pytest.raises(FidevalError, match=match):
        make()


def _folder(tmp_path, n=6):
    rng = np.random.default_rng(0)
    folder = tmp_path / "ref"
    folder.mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_folder_reference_as_str_and_path_are_the_same_images(tmp_path):
    folder = _folder(tmp_path)
    a = compute_reference_stats(str(folder), Proj(), cache_dir="")
    b = compute_reference_stats(folder, Proj(), cache_dir="")
    # The same images decoded by PIL directly.
    imgs = np.stack([np.asarray(Image.open(folder / f"{i}.png")) for i in range(6)])
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
    feats = Proj()(x).double().numpy()
    assert a.record.n == b.record.n == 6
    np.testing.assert_allclose(a.record.mu, feats.mean(0), rtol=1e-6)
    np.testing.assert_allclose(b.record.sigma, np.cov(feats, rowvar=False), rtol=1e-5, atol=1e-7)


def test_reference_is_validated_when_the_evaluator_is_built(tmp_path):
    with pytest.raises(FidevalError, match="no such file or folder"):
        FIDEvaluator(sampler, str(tmp_path / "missing"), Proj())
    (tmp_path / "empty").mkdir()
    with pytest.raises(FidevalError, match="no image files in folder"):
        FIDEvaluator(sampler, str(tmp_path / "empty"), Proj())
    (tmp_path / "junk.npz").write_text("not numpy")
    with pytest.raises(FidevalError, match=r"junk\.npz: not a statistics file"):
        FIDEvaluator(sampler, tmp_path / "junk.npz", Proj())
    with pytest.raises(FidevalError, match="need at least 2 images"):
        FIDEvaluator(sampler, torch.rand(1, 3, 4, 4), Proj())


def test_state_dict_round_trip(tmp_path):
    ev = FIDEvaluator(
        sampler,
        _folder(tmp_path, 40),
        Proj(),
        schedule=EveryNSteps(1, n=60),
        batch_size=20,
        cache_dir="",
        groups=4,
        target_n=100,
    )
    ev.evaluate(1, n=60)
    state = ev.state_dict()
    fresh = FIDEvaluator(sampler, tmp_path / "ref", Proj(), cache_dir="")
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    assert fresh.best is not None and fresh.best.fid == ev.best.fid
    with pytest.raises(FidevalError, match="missing key"):
        fresh.load_state_dict({"records": []})
