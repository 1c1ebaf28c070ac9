"""FID in training loops: the Evaluator, schedules and budget, the reference cache."""

from .evaluator import EvalRecord, FIDEvaluator, append_jsonl, read_jsonl
from .reference import ReferenceStats, compute_reference_stats, default_cache_dir
from .schedule import Clock, EveryNSteps, Plan, Schedule, Staged, WallClockBudget

__all__ = [
    "Clock",
    "EvalRecord",
    "EveryNSteps",
    "FIDEvaluator",
    "Plan",
    "ReferenceStats",
    "Schedule",
    "Staged",
    "WallClockBudget",
    "append_jsonl",
    "compute_reference_stats",
    "default_cache_dir",
    "read_jsonl",
]
