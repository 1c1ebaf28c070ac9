"""FID during training at a cost chosen up front: :class:`FIDEvaluator`.

A training loop calls ``evaluator.step(step)`` every step; the schedule decides whether
to act. An evaluation:

1. puts the sampler (or its EMA copy) and the extractor in eval mode, runs under
   ``torch.inference_mode()``, and isolates the RNG (explicit seed
   ``rank_seed(seed, step)``, one stream per rank; the
   training loop's Python / NumPy / torch generators are restored afterwards);
2. draws image batches, turns them into features, and streams them into K group
   statistics (no features kept);
3. compares them with the cached, factored reference: plain FID at N, bias-corrected FID∞
   and the expected FID of the ``target_n``-sample protocol, each with a 95% interval;
4. returns an :class:`EvalRecord`, sends it to every callback, appends it to a JSONL log,
   and calls ``keep_best`` when the FID is the best so far.

The headline ``fid`` of a record is, for ``fixed`` and ``adaptive`` evaluations, the
prediction of what the ``target_n``-sample protocol would give (``fid_at_target``); for
``full`` evaluations it is the protocol's own plain FID at N. Both are in the record.

Before the first evaluation it times one sampler batch and logs the projected cost.
Sampling is routed through :meth:`FIDEvaluator._draw_features`, the one place a
distributed mode shards (each rank its share, statistics merged by one all-reduce).

**Paired evaluations** (``paired=True``): sample i of every evaluation is drawn from the
same noise, :class:`~fideval.train.samplers.SampleNoise` ``(seed, i)`` — common random
numbers, independent of the step, the batch size and the number of ranks. The features
of the running evaluation are kept (CPU, float32) until its per-sample influence values
IF(x_i) are formed (:mod:`fideval.metrics.influence`); only those N floats are kept of
the previous and of the best evaluation. Each record then carries ``vs_previous`` and
``vs_best``: the paired difference of plain FID at N, FID(this) − FID(that), with its
95% interval (:func:`fideval.metrics.compare.compare_influence`). The reference is held
as statistics, so the intervals are conditional on it (the right question for choosing a
checkpoint against one reference; each comparison's ``warnings`` says so).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import distributed as dist_
from ..errors import FidevalError
from ..estimate import AdaptiveEstimator, FidEstimate, estimate_fid
from ..metrics.compare import Comparison, compare_influence
from ..metrics.influence import FrechetInfluence, GaussianRoots, gaussian_roots
from ..stats import GroupedStats
from .hygiene import evaluation_mode, isolated_rng
from .reference import (
    ReferenceStats,
    compute_reference_stats,
    extractor_provenance,
    resolve_reference,
)
from .samplers import SampleNoise, as_image_sampler, as_paired_sampler, check_images
from .schedule import Clock, EveryNSteps, Plan, Schedule, WallClockBudget


@dataclass
class EvalRecord:
    """One evaluation: what a training log needs, JSON-ready via :meth:`to_dict`."""

    step: int
    fid: float
    fid_ci95: tuple[float, float]
    n: int
    m: int | None
    method: str
    mode: str
    seconds: float
    seed: int
    fid_plain: float
    fid_plain_ci95: tuple[float, float]
    stopped_because: str
    target_n: int
    warnings: list[str] = field(default_factory=list)
    estimate: dict[str, Any] = field(default_factory=dict)
    paired: bool = False
    vs_previous: dict[str, Any] | None = None
    vs_best: dict[str, Any] | None = None
    best_step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["fid_ci95"] = list(self.fid_ci95)
        out["fid_plain_ci95"] = list(self.fid_plain_ci95)
        return out


KEEP_BEST_WHEN = ("lower", "significant")
REFERENCE_NOTE = (
    "reference held as statistics: its own sampling noise is not included; the interval "
    "is conditional on this reference"
)


@dataclass
class InfluenceSummary:
    """What a paired comparison needs of one evaluation: its plain FID at N and the
    per-sample influence values IF(x_i), i = 0 … N − 1, in sample order."""

    step: int
    fid: float
    values: np.ndarray


def describe_comparison(c: Comparison, step: int) -> str:
    """The verdict in words: better / worse than step X by D ± h, or not distinguishable."""
    h = c.half_width
    if c.ci95[1] < 0:
        return f"better than step {step} by {-c.difference:.3f} ± {h:.3f}"
    if c.ci95[0] > 0:
        return f"worse than step {step} by {c.difference:.3f} ± {h:.3f}"
    return f"not distinguishable from step {step} ({c.difference:+.3f} ± {h:.3f})"


def _format_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


class FIDEvaluator:
    """Training-time FID with a schedule, a budget, hygiene, records and a cached reference.

    Args:
        sampler: ``sample(batch_size) -> images`` in [0, 1] (B, C, H, W), or an object
            with ``.sample(batch_size=…)`` (e.g. denoising-diffusion-pytorch's
            ``GaussianDiffusion``).
        reference: a statistics file, a :class:`~fideval.io.statsfile.StatsRecord`, an
            image tensor/array or an indexable dataset (computed once, cached).
        extractor: images in [0, 1] → features (B, d), with ``provenance()``.
        schedule: a :class:`~fideval.train.schedule.Schedule` (default: every 1000 steps,
            5 000 samples).
        ema: an EMA copy of the model to sample from instead (its ``.sample`` is used).
        batch_size: images per sampler call.
        seed: evaluation ``i`` at step ``s`` uses seed ``rank_seed(seed, s)`` (recorded);
            with ``paired=True`` sample i's noise is ``SampleNoise(seed, i)`` at every step.
        groups: K groups of the generated stream (for the bias correction and intervals).
        target_n: the protocol sample count ``fid_at_target`` predicts (default 50 000).
        callbacks: callables receiving each :class:`EvalRecord` (print, TensorBoard, W&B).
        log_path: JSONL file; one object per evaluation is appended.
        keep_best: called with the record when its ``fid`` is the best so far
            (``keep_best_when="lower"``), or only when the paired comparison with the best
            so far says it is better: the interval of FID(new) − FID(best) lies below 0
            (``keep_best_when="significant"``, needs ``paired=True``).
        reference_n, cache_dir, device: passed to the reference computation.
        log: where messages go (default: stderr).
        paired: common random numbers across evaluations; each record gets ``vs_previous``
            and ``vs_best`` (paired differences with intervals). The sampler must take
            per-sample noise (:mod:`fideval.train.samplers`).
        keep_best_when: ``"lower"`` (default) or ``"significant"``.
    """

    def __init__(
        self,
        sampler: Any,
        reference: Any,
        extractor: Callable[[torch.Tensor], torch.Tensor],
        *,
        schedule: Schedule | None = None,
        ema: Any = None,
        batch_size: int = 100,
        seed: int = 0,
        groups: int = 10,
        target_n: int = 50_000,
        callbacks: Iterable[Callable[[EvalRecord], Any]] = (),
        log_path: str | os.PathLike[str] | None = None,
        keep_best: Callable[[EvalRecord], Any] | None = None,
        reference_n: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        device: torch.device | str | None = None,
        log: Callable[[str], None] | None = None,
        progress: bool = False,
        paired: bool = False,
        keep_best_when: str = "lower",
    ) -> None:
        if keep_best_when not in KEEP_BEST_WHEN:
            raise FidevalError(
                f"keep_best_when={keep_best_when!r}: expected one of {', '.join(KEEP_BEST_WHEN)}"
            )
        if keep_best_when == "significant" and not paired:
            raise FidevalError(
                "keep_best_when='significant' decides from the paired comparison with the best "
                "checkpoint so far; it needs paired=True"
            )
        self.model = ema if ema is not None else sampler
        self.paired = bool(paired)
        self.keep_best_when = keep_best_when
        self._draw_paired = as_paired_sampler(self.model) if self.paired else None
        self._draw = as_image_sampler(self.model)
        # Resolved and checked now, not at the first evaluation hours into training.
        self._reference_input = resolve_reference(reference)
        self.extractor = extractor
        self.schedule = schedule or EveryNSteps(1000)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.groups = int(groups)
        self.target_n = int(target_n)
        self.callbacks = list(callbacks)
        self.log_path = Path(log_path) if log_path is not None else None
        self.keep_best = keep_best
        self.reference_n = reference_n
        self.cache_dir = cache_dir
        self.device = device
        user_log = log or (lambda msg: print(f"[fideval] {msg}", file=sys.stderr))
        self.log = lambda msg: user_log(msg) if dist_.is_main_process() else None
        self.progress = progress
        self.records: list[EvalRecord] = []
        self.best: EvalRecord | None = None
        self._reference: ReferenceStats | None = None
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.seconds_per_sample: float | None = None
        self._last_return: float | None = None
        self._last_eval_step: int | None = None
        self._probed = False
        self._train_steps = 0
        self.probe_seconds = 0.0
        # Paired mode: this evaluation's local feature rows (global start, rows); the
        # influence values of the previous and of the best evaluation.
        self._kept: list[tuple[int, torch.Tensor]] | None = None
        self._ref_roots: GaussianRoots | None = None
        self._grouped: GroupedStats | None = None
        self.previous_influence: InfluenceSummary | None = None
        self.best_influence: InfluenceSummary | None = None

    # ------------------------------------------------------------------ reference
    @property
    def reference(self) -> ReferenceStats:
        """The reference statistics (computed or loaded on first use)."""
        if self._reference is None:
            with evaluation_mode(self.extractor):
                self._reference = compute_reference_stats(
                    self._reference_input,
                    self.extractor,
                    n=self.reference_n,
                    batch_size=self.batch_size,
                    cache_dir=self.cache_dir,
                    device=self.device,
                    log=self.log,
                )
        return self._reference

    # ------------------------------------------------------------------ timing
    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last_return is not None:
            self.train_seconds += now - self._last_return
            self._train_steps += 1
        self._last_return = now

    def _clock(self, step: int) -> Clock:
        return Clock(
            step,
            self.train_seconds,
            self.eval_seconds,
            self.seconds_per_sample,
            self._last_eval_step,
        )

    def probe(self) -> float:
        """Time one sampler batch through the extractor; log the projected cost in words."""
        t0 = time.perf_counter()
        with (
            isolated_rng(self.seed),
            evaluation_mode(self.model, self.extractor),
            torch.inference_mode(),
        ):
            self._draw_features(self.batch_size, 0)  # the evaluation's own path and device
        spent = time.perf_counter() - t0
        self.probe_seconds = spent
        self.eval_seconds += spent
        self.seconds_per_sample = spent / self.batch_size
        self._probed = True
        self.log(self.projection())
        return self.seconds_per_sample

    def projection(self) -> str:
        """The cost of evaluations at the current sampler speed, in words."""
        sps = self.seconds_per_sample
        if not sps:
            return "sampler speed not measured yet"
        text = (
            f"{self.target_n} samples ≈ {_format_seconds(self.target_n * sps)} at the current "
            f"sampler speed ({1 / sps:.1f} samples/s)"
        )
        sched = self.schedule
        planned: int | None = None
        if isinstance(sched, WallClockBudget):
            step_s = self.train_seconds / self._train_steps if self._train_steps else None
            if step_s:
                per_k = sched.fraction * step_s * 1000 / sps
                planned = int(min(max(per_k, sched.min_samples), sched.max_samples))
                text += (
                    f"; the budget ({sched.fraction:.0%} of training time, "
                    f"{step_s * 1000:.0f} s per 1000 steps) buys ≈ {per_k:.0f} samples per "
                    f"1000 training steps"
                )
            else:
                text += f"; the budget ({sched.describe()}) is spent as training time accrues"
        elif isinstance(sched, EveryNSteps):
            planned = sched.n
            text += f"; each evaluation ({sched.n} samples) ≈ {_format_seconds(sched.n * sps)}"
        if self.records:
            last = self.records[-1]
            half = 0.5 * (last.fid_ci95[1] - last.fid_ci95[0])
            text += f"; the last evaluation used {last.n} samples, ±{half:.2f} FID"
            if planned and planned != last.n:  # the half-width scales as 1/√N
                text += f" (≈ ±{half * math.sqrt(last.n / planned):.2f} at {planned})"
        return text

    # ------------------------------------------------------------------ public
    def step(self, step: int) -> EvalRecord | None:
        """Call once per training step; evaluates when the schedule says so."""
        self._tick()
        if not self._probed:
            self.probe()
        plan = self.schedule.plan(self._clock(step))
        if not self.schedule.step_only:
            # Ranks time things differently; rank 0's decision is everyone's (no deadlock).
            plan = dist_.broadcast_object(plan)
        record = None
        if plan is not None:
            record = self.evaluate(step, plan=plan)
        self._last_return = time.perf_counter()
        return record

    def evaluate(
        self,
        step: int,
        *,
        plan: Plan | None = None,
        mode: str = "fixed",
        n: int = 5_000,
        tolerance: float | None = None,
    ) -> EvalRecord:
        """Evaluate now (``plan`` or ``mode``/``n``/``tolerance``); returns the record."""
        plan = plan or Plan(mode, n, tolerance)
        if plan.mode not in ("fixed", "adaptive", "full"):
            raise FidevalError(f"unknown evaluation mode {plan.mode!r}")
        if plan.mode == "adaptive" and not plan.tolerance:
            raise FidevalError("adaptive evaluation needs a tolerance (FID units)")
        reference = self.reference  # computed outside the timed evaluation
        t0 = time.perf_counter()
        seed = dist_.rank_seed(self.seed, int(step))
        # Rows are kept for the paired influence values (all of them) and for the adaptive
        # estimator's per-sample variance (handed over batch by batch, then dropped).
        self._kept = [] if self.paired or plan.mode == "adaptive" else None
        try:
            with (
                isolated_rng(seed),
                evaluation_mode(self.model, self.extractor),
                torch.inference_mode(),
            ):
                est = self._run(plan, reference)
                influence = self._influence(step, est, reference) if self.paired else None
        finally:
            self._kept = None
        seconds = time.perf_counter() - t0
        self.eval_seconds += seconds
        n_used = est.n_used or est.n
        self.seconds_per_sample = seconds / max(n_used, 1)
        self._last_eval_step = int(step)
        record = self._record(step, plan, est, seconds, self.seed if self.paired else seed)
        comparisons = self._compare(record, influence) if influence is not None else {}
        half = 0.5 * (record.fid_ci95[1] - record.fid_ci95[0])
        self.log(
            f"step {record.step}: FID {record.fid:.3f} ±{half:.3f} from {record.n} samples in "
            f"{seconds:.1f} s; evaluation so far {self.eval_seconds:.0f} s vs training "
            f"{self.train_seconds:.0f} s"
        )
        steps = {which: other for which, (other, _) in comparisons.items()}
        for which, (other, comp) in comparisons.items():
            if which == "best" and steps.get("previous") == other:
                continue  # the previous evaluation is the best: said once
            both = which == "previous" and steps.get("best") == other
            label = "previous and best" if both else which
            self.log(f"step {record.step}: {describe_comparison(comp, other)} ({label}, paired)")
        self._emit(record, comparisons.get("best"), influence)
        if len(self.records) == 1:
            self.log(self.projection())  # now with the measured precision
        return record

    # ------------------------------------------------------------------ internals
    def _draw_features(self, count: int, batch_index: int, start: int = 0) -> torch.Tensor:
        """Features of ``count`` samples; in paired mode those of global samples
        ``start … start + count − 1`` (their noise depends on the index only)."""
        if self._draw_paired is not None:
            raw = self._draw_paired(count, SampleNoise(self.seed, start, count))
        else:
            raw = self._draw(count)
        images = check_images(raw, batch_index, count)
        if self.device is not None:
            images = images.to(self.device)
        feats = self.extractor(images)
        if self._kept is not None:
            self._kept.append((start, feats.detach().to("cpu", torch.float32)))
        return feats

    def _draw_groups(self, offset: int, count: int) -> GroupedStats:
        """The next ``count`` samples of the global stream (from global row ``offset``) as K
        group statistics — the same on every rank.

        Distributed: this rank draws its contiguous share, and one all-reduce merges the
        groups, so every rank ends with the statistics a single process would have had.
        """
        start, stop = dist_.shard_range(count)
        local = GroupedStats(self.groups, offset=offset + start)
        drawn, b = 0, 0
        with dist_.collective_guard("evaluation sampling"):
            while drawn < stop - start:
                c = min(self.batch_size, stop - start - drawn)
                local.update(self._draw_features(c, b, offset + start + drawn))
                drawn, b = drawn + c, b + 1
        return dist_.all_reduce_grouped(local)

    def _run(self, plan: Plan, reference: ReferenceStats) -> FidEstimate:
        ref = reference.reference
        if plan.mode == "adaptive":
            est = AdaptiveEstimator(
                ref,
                plan.tolerance or 1.0,
                groups=self.groups,
                max_samples=plan.n,
                target_n=self.target_n,
                batch_size=self.batch_size,
                progress=self.progress,
                min_samples=min(plan.n, 2000),
            )
            while not est.done:  # draw up to the estimator's next check, then check
                count = max(1, min(est.next_check, est.max_samples) - est.n)
                before = len(self._kept) if self._kept is not None else 0
                increment = self._draw_groups(est.n, count)
                est.add_grouped(increment, features=self._variance_rows(before))
                if not self.paired and self._kept is not None:
                    self._kept.clear()
            self._grouped = est.grouped
            return est.estimate()
        grouped = self._draw_groups(0, plan.n)
        self._grouped = grouped
        est = estimate_fid(grouped, ref, target_n=self.target_n)
        est.n_used, est.stopped_because = grouped.n, f"{plan.mode} sample count reached"
        return est

    def _variance_rows(self, before: int) -> torch.Tensor | None:
        """The rows of the last increment, for the adaptive estimator's per-sample
        variance; None with several ranks (each holds other rows, and every rank must
        reach the same stopping decision: the estimator then uses its group jackknife)."""
        if self._kept is None or dist_.world_size() > 1 or len(self._kept) <= before:
            return None
        return torch.cat([rows for _, rows in self._kept[before:]])

    def _reference_roots(self, reference: ReferenceStats) -> GaussianRoots:
        if self._ref_roots is None:
            rec = reference.record
            self._ref_roots = gaussian_roots(rec.mu, rec.sigma, rec.n, name="reference sigma")
        return self._ref_roots

    def _influence(
        self, step: int, est: FidEstimate, reference: ReferenceStats
    ) -> InfluenceSummary:
        """Per-sample influence values of this evaluation's plain FID at N, in sample order
        (each rank computes its rows', then they are gathered)."""
        total = self._grouped.total()
        roots = gaussian_roots(total.mean, total.cov, total.n, name="generated sigma")
        inf = FrechetInfluence(roots, self._reference_roots(reference))
        kept = self._kept or []
        starts = [s for s, _ in kept]
        values = [inf.generated(rows) for _, rows in kept]
        if dist_.world_size() > 1:
            import torch.distributed as tdist

            box: list[Any] = [None] * dist_.world_size()
            tdist.all_gather_object(box, (starts, values))
            starts = [s for part in box for s in part[0]]
            values = [v for part in box for v in part[1]]
        order = np.argsort(starts, kind="stable")
        flat = np.concatenate([values[i] for i in order]) if values else np.zeros(0)
        return InfluenceSummary(int(step), float(est.fid), flat[: int(total.n)])

    def _compare(
        self, record: EvalRecord, influence: InfluenceSummary
    ) -> dict[str, tuple[int, Comparison]]:
        """Paired comparisons with the previous and the best evaluation, put in the record."""
        out: dict[str, tuple[int, Comparison]] = {}
        for which, other in (("previous", self.previous_influence), ("best", self.best_influence)):
            if other is None or other.values.size < 2 or influence.values.size < 2:
                continue
            comp = compare_influence(
                influence.values,
                other.values,
                influence.fid,
                other.fid,
                paired=True,
                warnings=[REFERENCE_NOTE],
            )
            out[which] = (other.step, comp)
            summary = {"step": other.step, "summary": describe_comparison(comp, other.step)}
            setattr(record, f"vs_{which}", {**summary, **comp.to_dict()})
        return out

    def _record(
        self, step: int, plan: Plan, est: FidEstimate, seconds: float, seed: int
    ) -> EvalRecord:
        if plan.mode == "full":
            fid, ci, method = est.fid, est.fid_ci95, "plain FID at N (standard protocol)"
        else:
            fid, ci = est.fid_at_target, est.fid_at_target_ci95
            method = f"predicted E[FID at N={est.target_n}] ({est.method})"
        return EvalRecord(
            step=int(step),
            fid=float(fid),
            fid_ci95=(float(ci[0]), float(ci[1])),
            n=int(est.n_used or est.n),
            m=est.m,
            method=method,
            mode=plan.mode,
            seconds=float(seconds),
            seed=seed,
            fid_plain=float(est.fid),
            fid_plain_ci95=(float(est.fid_ci95[0]), float(est.fid_ci95[1])),
            stopped_because=est.stopped_because or "",
            target_n=est.target_n,
            warnings=list(est.warnings),
            estimate=est.to_dict(),
            paired=self.paired,
        )

    def _is_best(self, record: EvalRecord, vs_best: tuple[int, Comparison] | None) -> bool:
        if not math.isfinite(record.fid):
            return False
        if self.best is None or (self.paired and self.best_influence is None):
            return True
        if self.keep_best_when == "significant":
            # Only an improvement whose interval excludes 0; no comparison, no change.
            return vs_best is not None and vs_best[1].ci95[1] < 0
        return record.fid < self.best.fid

    def _emit(
        self,
        record: EvalRecord,
        vs_best: tuple[int, Comparison] | None = None,
        influence: InfluenceSummary | None = None,
    ) -> None:
        self.records.append(record)
        best = self._is_best(record, vs_best)
        if influence is not None:  # every rank keeps the same summaries
            self.previous_influence = influence
            if best:
                self.best_influence = influence
        if best:
            self.best = record
        record.best_step = None if self.best is None else self.best.step
        if not dist_.is_main_process():
            return  # every rank returns the record; only rank 0 writes and calls back
        if self.log_path is not None:
            append_jsonl(self.log_path, record.to_dict())
        for cb in self.callbacks:
            cb(record)
        if best and self.keep_best is not None:
            self.keep_best(record)

    def state_dict(self) -> dict[str, Any]:
        """Timing and records, to resume budget accounting with a training checkpoint."""
        state: dict[str, Any] = {
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "seconds_per_sample": self.seconds_per_sample,
            "last_eval_step": self._last_eval_step,
            "records": [r.to_dict() for r in self.records],
            "best_step": None if self.best is None else self.best.step,
        }
        for key in ("previous_influence", "best_influence"):
            inf = getattr(self, key)
            if inf is not None:  # N floats: the next paired comparison survives a resume
                state[key] = {"step": inf.step, "fid": inf.fid, "values": inf.values.copy()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`: resume budget accounting and records."""
        missing = {
            "train_seconds",
            "eval_seconds",
            "seconds_per_sample",
            "last_eval_step",
            "records",
        } - set(state)
        if missing:
            raise FidevalError(
                f"FIDEvaluator.load_state_dict: missing key(s) {sorted(missing)}; expected the "
                f"dictionary FIDEvaluator.state_dict() returns"
            )
        self.train_seconds = float(state["train_seconds"])
        self.eval_seconds = float(state["eval_seconds"])
        sps = state["seconds_per_sample"]
        self.seconds_per_sample = None if sps is None else float(sps)
        self._probed = self.seconds_per_sample is not None
        self._last_eval_step = state["last_eval_step"]
        self.records = [EvalRecord(**r) for r in state["records"]]
        best_step = state.get("best_step")
        by_step = [r for r in self.records if r.step == best_step]
        if by_step:
            self.best = by_step[-1]
        else:
            self.best = min(self.records, key=lambda r: r.fid, default=None)
        for key in ("previous_influence", "best_influence"):
            saved = state.get(key)
            setattr(
                self,
                key,
                None
                if saved is None
                else InfluenceSummary(
                    int(saved["step"]), float(saved["fid"]), np.asarray(saved["values"])
                ),
            )

    def provenance(self) -> dict[str, Any]:
        return extractor_provenance(self.extractor)


def append_jsonl(path: Path, obj: dict[str, Any]) -> None:
    """Append one JSON line with a single ``write`` on an O_APPEND descriptor, fsync'ed.

    A kill leaves every earlier line intact; a line is either written whole or not at all
    (single appends below the filesystem's atomic-write size).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(obj, default=float) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a JSONL log (a torn last line from a kill is ignored)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
