"""The training-time Evaluator: schedules, budget, hygiene, records, reference cache."""

from __future__ import annotations

import importlib
import itertools
import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from fideval.distributed import rank_seed
from fideval.errors import FidevalError
from fideval.train import (
    EveryNSteps,
    FIDEvaluator,
    Staged,
    WallClockBudget,
    compute_reference_stats,
    read_jsonl,
)
from fideval.train.reference import _save_partial, cache_key, key_hash, resolve_reference
from fideval.train.schedule import Clock


class TinyExtractor(nn.Module):
    """Images (B, 1, 4, 4) in [0, 1] → 6-d features; with a dropout to catch train mode."""

    def __init__(self, seed: int = 0, dims: int = 6) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.Linear(16, dims)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(dims, 16, generator=g))
            self.proj.bias.zero_()
        self.drop = nn.Dropout(0.5)
        self.seed = seed
        self.dims = dims
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.drop(torch.tanh(self.proj(x.flatten(1))))

    def provenance(self) -> dict:
        return {
            "extractor": "tiny",
            "weights_sha256": f"seed{self.seed}",
            "dims": self.dims,
            "profile": "unit",
        }


class FakeModel(nn.Module):
    """A 'generator': uniform noise blended towards a fixed pattern; records its modes."""

    def __init__(self, quality: float = 0.5) -> None:
        super().__init__()
        self.quality = quality
        self.drop = nn.Dropout(0.1)
        self.modes_seen: list[bool] = []

    def sample(self, batch_size: int) -> torch.Tensor:
        self.modes_seen.append(self.training)
        base = torch.rand(batch_size, 1, 4, 4)
        return (self.quality * base + (1 - self.quality) * 0.5).clamp(0, 1)


@pytest.fixture
def real() -> torch.Tensor:
    return torch.rand(300, 1, 4, 4, generator=torch.Generator().manual_seed(1))


def make(real, tmp_path, **kw):
    defaults = dict(
        schedule=EveryNSteps(2, n=200),
        batch_size=50,
        groups=4,
        cache_dir=tmp_path / "cache",
        log=lambda m: None,
    )
    defaults.update(kw)
    return FIDEvaluator(FakeModel(), real, TinyExtractor(), **defaults)


def test_every_n_steps_and_records(real, tmp_path):
    seen = []
    ev = make(real, tmp_path, log_path=tmp_path / "log.jsonl", callbacks=[seen.append])
    out = [ev.step(s) for s in range(1, 7)]
    assert [r is not None for r in out] == [False, True, False, True, False, True]
    assert [r.step for r in seen] == [2, 4, 6]
    rows = read_jsonl(tmp_path / "log.jsonl")
    assert [r["step"] for r in rows] == [2, 4, 6]
    for r in rows:
        assert {"step", "fid", "fid_ci95", "n", "seconds", "method"} <= set(r)
        assert r["n"] == 200 and len(r["fid_ci95"]) == 2
        assert r["fid_ci95"][0] <= r["fid"] <= r["fid_ci95"][1]


def test_eval_mode_restored_and_used(real, tmp_path):
    ev = make(real, tmp_path)
    model, ext = ev.model, ev.extractor
    model.train()
    ext.train()
    ext.proj.eval()  # a submodule the user froze stays frozen
    ev.evaluate(10, n=100)
    assert model.modes_seen and not any(model.modes_seen)  # sampled in eval mode
    assert model.training and ext.training and not ext.proj.training


def test_training_rng_untouched(real, tmp_path):
    ev = make(real, tmp_path)
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(7)  # noqa: NPY002
    ev.evaluate(2, n=100)
    after = (torch.rand(3), random.random(), np.random.rand())  # noqa: NPY002
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(7)  # noqa: NPY002
    expected = (torch.rand(3), random.random(), np.random.rand())  # noqa: NPY002
    assert torch.equal(after[0], expected[0]) and after[1:] == expected[1:]


def test_seeded_evaluations_are_reproducible(real, tmp_path):
    a = make(real, tmp_path).evaluate(8, n=100)
    b = make(real, tmp_path).evaluate(8, n=100)
    c = make(real, tmp_path).evaluate(9, n=100)
    assert a.seed == rank_seed(0, 8, rank_=0) and a.fid == b.fid and a.fid != c.fid


def test_keep_best_called_on_improvement(real, tmp_path):
    saved = []
    ev = make(real, tmp_path, keep_best=saved.append)
    for q in (0.9, 0.2, 0.6, 0.05):
        ev.model.quality = q
        ev.evaluate(1, n=200)
    fids = [r.fid for r in ev.records]
    assert [r.fid for r in saved] == [
        f for i, f in enumerate(fids) if f < min(fids[:i], default=np.inf)
    ]


def test_budget_schedule_keeps_fraction():
    sched = WallClockBudget(fraction=0.1, min_samples=100, max_samples=1000)
    # 0.01 s per sample; 50 s of training → 5 s credit → 500 samples.
    assert sched.plan(Clock(10, 50.0, 0.0, 0.01, None)).n == 500
    assert sched.plan(Clock(10, 5.0, 0.0, 0.01, None)) is None  # 0.5 s buys 50 < 100
    assert sched.plan(Clock(10, 500.0, 0.0, 0.01, None)).n == 1000  # capped
    assert sched.plan(Clock(10, 50.0, 4.5, 0.01, None)) is None  # credit spent


class FakeTime:
    """Stands in for the ``time`` module inside the evaluator: a clock that moves only when
    told, so the budget logic is tested on exact numbers, whatever the machine's speed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ClockedModel(FakeModel):
    """A generator whose sampling costs ``cost(call)`` fake seconds per sample."""

    def __init__(self, clock: FakeTime, cost) -> None:
        super().__init__()
        self.clock, self.cost, self.calls = clock, cost, 0

    def sample(self, batch_size: int) -> torch.Tensor:
        self.clock.advance(batch_size * self.cost(self.calls))
        self.calls += 1
        return super().sample(batch_size)


def _budget_run(real, tmp_path, monkeypatch, cost, steps, **schedule):
    """``steps`` training steps of exactly 1 fake second each, under a WallClockBudget."""
    clock = FakeTime()
    monkeypatch.setattr(importlib.import_module("fideval.train.evaluator"), "time", clock)
    model = ClockedModel(clock, cost)
    ev = FIDEvaluator(
        model,
        real,
        TinyExtractor(),
        schedule=WallClockBudget(**schedule),
        batch_size=50,
        groups=4,
        cache_dir=tmp_path / "cache",
        log=lambda m: None,
    )
    trace = []  # after each step: (train s, eval s, record or None)
    for s in range(1, steps + 1):
        clock.advance(1.0)  # "training"
        rec = ev.step(s)
        trace.append((ev.train_seconds, ev.eval_seconds, rec))
    return ev, trace


def test_budget_with_a_known_cost_is_spent_exactly(real, tmp_path, monkeypatch):
    """A sample costs c = 2⁻¹⁰ s, a step 1 s, fraction ¼ (all exact in binary): the probe
    (one batch of 50) costs 50c; from step 2 on, each step's ¼ s of credit buys 256 samples
    (206 the first time, after the probe); evaluation time is never training time."""
    c = 2.0**-10
    ev, trace = _budget_run(
        real, tmp_path, monkeypatch, lambda i: c, 30, fraction=0.25, min_samples=100,
        max_samples=400,
    )  # fmt: skip
    assert ev.probe_seconds == 50 * c
    assert [r.step for r in ev.records] == list(range(2, 31))
    assert [r.n for r in ev.records] == [206] + [256] * 28
    assert all(r.seconds == r.n * c for r in ev.records)
    for s, (train, spent, _) in enumerate(trace, start=1):
        assert train == s - 1  # 1 s per step, evaluations excluded
        assert spent == (0.25 * train if s >= 2 else 50 * c)  # the budget, no overshoot


@pytest.mark.parametrize(
    "cost, expect_n",
    [
        (2.0**-8, None),  # ¼ s buys 64 < min_samples: every other step, credit saved up
        (2.0**-12, 400),  # ¼ s buys 1024 > max_samples: capped, credit left unspent
    ],
)
def test_budget_never_overshoots_a_known_cost_and_wastes_none(
    real, tmp_path, monkeypatch, cost, expect_n
):
    lo, hi, f = 100, 400, 0.25
    ev, trace = _budget_run(
        real, tmp_path, monkeypatch, lambda i: cost, 40, fraction=f, min_samples=lo,
        max_samples=hi,
    )  # fmt: skip
    assert len(ev.records) >= 10
    for train, spent, rec in trace[1:]:
        assert spent <= f * train  # the cost per sample is exact, so no overshoot at all
        left = f * train - spent
        # Credit that would buy min_samples is spent at once (unless the cap stopped it).
        assert left < lo * cost or (rec is not None and rec.n == hi)
    for rec in ev.records:
        assert lo <= rec.n <= hi and rec.seconds == rec.n * cost
        if expect_n is not None:
            assert rec.n == expect_n
    if expect_n is None:  # 64 samples of credit a step: evaluations are spaced out
        assert all(b.step - a.step >= 2 for a, b in itertools.pairwise(ev.records))


def test_budget_overshoot_is_at_most_one_evaluation_when_the_sampler_slows(
    real, tmp_path, monkeypatch
):
    """The sampler becomes 4× slower after its 40th batch: evaluations planned at the old
    speed overshoot, each by less than its own cost, training pays the excess back, and
    once the new speed is measured the budget is again spent exactly."""
    c = 2.0**-10
    ev, trace = _budget_run(
        real, tmp_path, monkeypatch, lambda i: c if i < 40 else 4 * c, 60, fraction=0.25,
        min_samples=50, max_samples=2000,
    )  # fmt: skip
    last_cost, prev_excess, overshoots = ev.probe_seconds, None, 0
    for train, spent, rec in trace:
        excess = spent - 0.25 * train
        if rec is not None:
            last_cost = rec.seconds
            overshoots += excess > 0
        elif prev_excess is not None:
            assert excess < prev_excess  # without an evaluation, training pays it back
        assert excess <= last_cost  # never more than the last evaluation (or probe) cost
        prev_excess = excess
    assert overshoots >= 1  # the slowdown did cause an overshoot
    # Once the new speed is measured, each step's ¼ s buys 64 slow samples, spent exactly.
    assert [r.n for r in ev.records[:6]] == [206] + [256] * 5  # before the slowdown
    assert [r.n for r in ev.records[-40:]] == [64] * 40
    assert [spent - 0.25 * train for train, spent, _ in trace[-40:]] == [0.0] * 40


def test_staged_schedule():
    sched = Staged(start=10, full_from=30, every=5, tolerance=0.5, max_samples=800, full_n=5000)
    plans = {s: sched.plan(Clock(s, 0, 0, None, None)) for s in range(0, 36)}
    assert all(plans[s] is None for s in range(10))
    assert plans[10].mode == "adaptive" and plans[10].tolerance == 0.5 and plans[10].n == 800
    assert plans[30].mode == "full" and plans[30].n == 5000
    assert plans[11] is None


def test_adaptive_and_full_modes(real, tmp_path):
    ev = make(real, tmp_path)
    r = ev.evaluate(3, plan=None, mode="adaptive", n=3000, tolerance=1e9)
    assert r.mode == "adaptive" and r.n <= 3000 and r.stopped_because
    full = ev.evaluate(4, mode="full", n=400)
    assert full.fid == full.fid_plain and full.n == 400
    with pytest.raises(FidevalError, match="needs a tolerance"):
        ev.evaluate(5, mode="adaptive", n=100)


def test_sampler_output_is_checked(real, tmp_path):
    ev = FIDEvaluator(
        lambda b: torch.rand(b, 1, 4, 4) * 2 - 1,
        real,
        TinyExtractor(),
        cache_dir=tmp_path,
        log=lambda m: None,
        batch_size=50,
    )
    with pytest.raises(
        FidevalError, match=r"sampler batch 0: values in \[.*expected images in \[0, 1\]"
    ):
        ev.evaluate(1, n=100)


# ----------------------------------------------------------------- reference cache


def test_reference_cache_hit_and_key_changes(real, tmp_path):
    ext = TinyExtractor()
    a = compute_reference_stats(real, ext, cache_dir=tmp_path)
    assert not a.from_cache and a.cache_path.exists()
    calls = ext.calls
    b = compute_reference_stats(real, ext, cache_dir=tmp_path)
    assert b.from_cache and ext.calls == calls  # nothing recomputed
    assert np.array_equal(a.record.sigma, b.record.sigma)
    # Every key change gives a different cache entry: data, N, extractor weights, dims.
    changed = [
        compute_reference_stats(real.clone().mul_(0.99), ext, cache_dir=tmp_path),
        compute_reference_stats(real, ext, n=200, cache_dir=tmp_path),
        compute_reference_stats(real, TinyExtractor(seed=1), cache_dir=tmp_path),
        compute_reference_stats(real, TinyExtractor(dims=5), cache_dir=tmp_path),
    ]
    assert all(not c.from_cache for c in changed)
    # Another N, extractor or dims is another entry; the same source with other content
    # finds its old entry (its name leaves out the fingerprint), recomputes and replaces it.
    assert len({c.cache_path for c in changed[1:]} | {a.cache_path}) == 4
    assert changed[0].cache_path == a.cache_path


def test_reference_cache_image_size_in_key(tmp_path):
    small = torch.rand(50, 1, 4, 4)
    key_a = cache_key(resolve_reference(small), TinyExtractor(), 50)
    assert key_a["image_size"] == [4, 4] and key_a["augmentation"] == "none"


def test_stale_cache_with_wrong_key_is_not_reused(real, tmp_path):
    ext = TinyExtractor()
    a = compute_reference_stats(real, ext, cache_dir=tmp_path)
    # Tamper: rewrite the file's recorded key (as if made by another version of the key).
    from fideval.io.statsfile import load_stats, save_stats

    rec = load_stats(a.cache_path)
    rec.meta["cache_key"] = {**rec.meta["cache_key"], "dims": 999}
    save_stats(a.cache_path, rec)
    b = compute_reference_stats(real, ext, cache_dir=tmp_path)
    assert not b.from_cache


class Boom(Exception):
    pass


def test_reference_resume_after_kill_counts_each_image_once(real, tmp_path):
    full = compute_reference_stats(real, TinyExtractor(), cache_dir="", batch_size=20)

    class Dying(TinyExtractor):
        def forward(self, x):
            if self.calls == 9:
                raise Boom("killed")
            return super().forward(x)

    dying = Dying()
    with pytest.raises(Boom):
        compute_reference_stats(real, dying, cache_dir=tmp_path, batch_size=20, checkpoint_every=4)
    partials = list(tmp_path.glob("*.partial.npz"))
    assert len(partials) == 1
    with np.load(partials[0]) as p:
        assert int(p["consumed"]) == 160 and int(p["state_n"]) == 160  # 8 batches checkpointed
    resumed_ext = TinyExtractor()
    resumed = compute_reference_stats(real, resumed_ext, cache_dir=tmp_path, batch_size=20)
    assert resumed_ext.calls == (300 - 160) // 20  # only the rest was computed
    assert resumed.record.n == 300
    np.testing.assert_allclose(resumed.record.sigma, full.record.sigma, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(resumed.record.mu, full.record.mu, rtol=1e-12, atol=1e-15)
    assert not list(tmp_path.glob("*.partial.npz"))


def test_partial_with_other_key_is_ignored(real, tmp_path):
    ext = TinyExtractor()
    key = cache_key(resolve_reference(real), ext, 300)
    from fideval.stats import GaussianStats

    bogus = GaussianStats()
    bogus.update(np.ones((5, 6)) * 100 + np.arange(6))
    _save_partial(tmp_path / f"ref-{key_hash(key)}.partial.npz", bogus, 100, {**key, "n": 12345})
    out = compute_reference_stats(real, ext, cache_dir=tmp_path)
    assert out.record.n == 300  # the foreign partial was not merged in
    assert json.dumps(out.record.meta["cache_key"], sort_keys=True) == json.dumps(
        key, sort_keys=True
    )


def test_projection_in_words(real, tmp_path):
    msgs = []
    ev = make(real, tmp_path, log=msgs.append, schedule=EveryNSteps(2, n=400))
    for s in range(1, 3):
        ev.step(s)
    assert "50000 samples ≈" in msgs[0] and "each evaluation (400 samples)" in msgs[0]
    last = [m for m in msgs if "the last evaluation used" in m]
    assert last and "±" in last[0]


def test_checkpoint_left_after_caching_is_removed_on_cache_hit(real, tmp_path):
    """A kill between writing the cache and removing the checkpoint leaves a stale partial."""
    ext = TinyExtractor()
    first = compute_reference_stats(real, ext, cache_dir=tmp_path)
    key = cache_key(resolve_reference(real), ext, 300)
    from fideval.stats import GaussianStats

    part = GaussianStats()
    part.update(np.ones((40, 6)) + np.arange(6))
    stale = tmp_path / f"ref-{key_hash(key)}.partial.npz"
    _save_partial(stale, part, 40, key)
    again = compute_reference_stats(real, ext, cache_dir=tmp_path)
    assert again.from_cache and again.record.n == 300
    np.testing.assert_array_equal(again.record.sigma, first.record.sigma)
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.cache_path.name]


def test_checkpoint_whose_count_disagrees_is_not_resumed(real, tmp_path):
    """A partial whose N is not the number of images it claims consumed is recomputed."""
    ext = TinyExtractor()
    full = compute_reference_stats(real, TinyExtractor(), cache_dir="", batch_size=20)
    key = cache_key(resolve_reference(real), ext, 300)
    from fideval.stats import GaussianStats

    part = GaussianStats()
    part.update(np.zeros((50, 6)))  # 50 rows, but "100 consumed"
    _save_partial(tmp_path / f"ref-{key_hash(key)}.partial.npz", part, 100, key)
    out = compute_reference_stats(real, ext, cache_dir=tmp_path, batch_size=20)
    assert out.record.n == 300
    np.testing.assert_allclose(out.record.sigma, full.record.sigma, rtol=1e-12, atol=1e-15)
