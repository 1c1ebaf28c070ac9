"""When to evaluate, and how: fixed intervals, stages, or a wall-clock budget.

A schedule answers :meth:`plan` at each training step with ``None`` (skip) or a
:class:`Plan`: ``mode`` is ``"fixed"`` (exactly ``n`` samples, bias-corrected
estimates with intervals), ``"adaptive"`` (draw until the interval half-width is within
``tolerance`` or ``n`` samples are used) or ``"full"`` (the standard protocol: ``n``
samples, plain FID is the headline).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FidevalError

MODES = ("fixed", "adaptive", "full")


def check_mode(owner: str, mode: str, tolerance: float | None) -> None:
    """A known mode, and a positive tolerance exactly when the mode is adaptive."""
    if mode not in MODES:
        raise FidevalError(f"{owner}: unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "adaptive" and (tolerance is None or not tolerance > 0):
        raise FidevalError(
            f"{owner}: mode='adaptive' draws samples until the interval half-width is within "
            f"tolerance, so it needs a tolerance > 0 (FID units), got {tolerance!r}"
        )


def check_positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not value >= 1:
            raise FidevalError(f"{owner}: {name} must be ≥ 1, got {value!r}")


@dataclass(frozen=True)
class Plan:
    mode: str  # "fixed", "adaptive" or "full"
    n: int  # samples (fixed / full) or the cap (adaptive)
    tolerance: float | None = None

    def __post_init__(self) -> None:
        check_mode("Plan", self.mode, self.tolerance)
        check_positive("Plan", n=self.n)


@dataclass(frozen=True)
class Clock:
    """What a schedule may look at: seconds spent training and evaluating so far."""

    step: int
    train_seconds: float
    eval_seconds: float
    seconds_per_sample: float | None
    last_eval_step: int | None


class Schedule:
    #: True when :meth:`plan` depends on the step alone (same answer on every rank);
    #: otherwise the evaluator broadcasts rank 0's plan so that ranks never diverge.
    step_only: bool = False

    def plan(self, clock: Clock) -> Plan | None:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        return type(self).__name__


@dataclass
class EveryNSteps(Schedule):
    """Evaluate every ``every`` steps (from ``start``) with ``n`` samples.

    ``mode="full"`` is denoising-diffusion-pytorch's protocol (``n=50_000`` every 1000).
    """

    step_only = True

    every: int
    n: int = 5_000
    mode: str = "fixed"
    start: int = 1
    tolerance: float | None = None

    def __post_init__(self) -> None:
        check_positive("EveryNSteps", every=self.every, n=self.n)
        check_mode("EveryNSteps", self.mode, self.tolerance)

    def plan(self, clock: Clock) -> Plan | None:
        if clock.step < self.start or clock.step % self.every:
            return None
        return Plan(self.mode, self.n, self.tolerance)

    def describe(self) -> str:
        return f"every {self.every} steps, {self.mode} with {self.n} samples"


@dataclass
class Staged(Schedule):
    """Off before ``start``; adaptive (±``tolerance``, ≤ ``max_samples``) every ``every``
    steps until ``full_from``; the full protocol (``full_n``) every ``every`` steps from
    then on (set ``full_from`` to the last step for "the full protocol at the end")."""

    step_only = True

    start: int
    full_from: int
    every: int
    tolerance: float = 1.0
    max_samples: int = 20_000
    full_n: int = 50_000

    def __post_init__(self) -> None:
        check_positive("Staged", every=self.every, max_samples=self.max_samples, full_n=self.full_n)
        check_mode("Staged", "adaptive", self.tolerance)
        if self.full_from < self.start:
            raise FidevalError(
                f"Staged: full_from={self.full_from} is before start={self.start}; expected "
                f"start ≤ full_from"
            )

    def plan(self, clock: Clock) -> Plan | None:
        if clock.step < self.start or clock.step % self.every:
            return None
        if clock.step >= self.full_from:
            return Plan("full", self.full_n)
        return Plan("adaptive", self.max_samples, self.tolerance)

    def describe(self) -> str:
        return (
            f"off before step {self.start}; adaptive ±{self.tolerance:g} every {self.every} "
            f"steps until {self.full_from}; then the full protocol ({self.full_n} samples)"
        )


@dataclass
class WallClockBudget(Schedule):
    """Keep evaluation time ≤ ``fraction`` of training time.

    Credit = fraction × training seconds − evaluation seconds. An evaluation runs once
    the credit pays for ``min_samples`` (and at least ``min_interval`` steps passed since
    the last), with as many samples as the credit buys, capped at ``max_samples``; the
    time spent is then charged. The cost per sample comes from the evaluator's timing
    probe (one sampler batch before the first evaluation) and every evaluation since.
    """

    fraction: float = 0.1
    min_samples: int = 1_000
    max_samples: int = 20_000
    min_interval: int = 1
    mode: str = "fixed"
    tolerance: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:
            raise FidevalError(f"WallClockBudget: fraction must be in (0, 1), got {self.fraction}")
        check_positive(
            "WallClockBudget", min_samples=self.min_samples, min_interval=self.min_interval
        )
        if self.max_samples < self.min_samples:
            raise FidevalError(
                f"WallClockBudget: max_samples={self.max_samples} < min_samples="
                f"{self.min_samples}; expected min_samples ≤ max_samples"
            )
        check_mode("WallClockBudget", self.mode, self.tolerance)

    def credit(self, clock: Clock) -> float:
        return self.fraction * clock.train_seconds - clock.eval_seconds

    def affordable(self, clock: Clock) -> int:
        if not clock.seconds_per_sample:
            return 0
        return int(max(self.credit(clock), 0.0) / clock.seconds_per_sample)

    def plan(self, clock: Clock) -> Plan | None:
        since = clock.step - (clock.last_eval_step or 0)
        if since < self.min_interval:
            return None
        n = self.affordable(clock)
        if n < self.min_samples:
            return None
        return Plan(self.mode, min(n, self.max_samples), self.tolerance)

    def describe(self) -> str:
        return (
            f"≤{self.fraction:.0%} of training time, {self.min_samples}–{self.max_samples} "
            f"samples per evaluation"
        )
