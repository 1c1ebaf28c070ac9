"""Companion metrics on feature arrays: KID, Inception Score, PRDC, CMMD, motion suite.

All functions take numpy arrays (memory-mapped ones included) or torch tensors on
any device, compute in float64 (unless asked for float32) and return Python
floats or small dataclasses. Pairwise quantities are computed on bounded row
strips: no N×N matrix is ever held. See ``docs/metrics.md`` for definitions.
"""

from __future__ import annotations

from .cmmd import cmmd
from .inception_score import InceptionScoreResult, inception_score
from .kid import KIDResult, kid, mmd2_unbiased
from .motion import (
    MatchingResult,
    diversity,
    matching_score,
    motion_fid,
    motion_suite,
    multimodality,
    r_precision,
    text_motion_matching,
)
from .prdc import PRDCResult, prdc
from .replicate import ReplicationSummary, replicate, student_t_ppf, summarize

__all__ = [
    "InceptionScoreResult",
    "KIDResult",
    "MatchingResult",
    "PRDCResult",
    "ReplicationSummary",
    "cmmd",
    "diversity",
    "inception_score",
    "kid",
    "matching_score",
    "mmd2_unbiased",
    "motion_fid",
    "motion_suite",
    "multimodality",
    "prdc",
    "r_precision",
    "replicate",
    "student_t_ppf",
    "summarize",
    "text_motion_matching",
]
