"""Errors raised by fideval.

Every error a user can cause (bad files, bad shapes, non-finite features,
incompatible statistics) is a :class:`FidevalError`. Its message says what was
wrong, where (file, key, batch, rows) and what was expected; the CLI prints it
on one line and exits with status 2, without a traceback.
"""

from __future__ import annotations


class FidevalError(ValueError):
    """A user-facing error: invalid input, incompatible statistics, missing files."""


class IncompatibleStatsError(FidevalError):
    """Two statistics were made by different pipelines (extractor, weights, dims, profile)."""


class NonFiniteFeaturesError(FidevalError):
    """Features contain NaN or Inf."""


class NumericalError(FidevalError):
    """The input is mathematically invalid beyond round-off (e.g. an indefinite covariance)."""
