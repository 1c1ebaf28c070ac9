"""fideval: fast, numerically robust and honest FID and companion metrics.

The flow (each stage a module or folder): data → features → stats → frechet →
metrics / estimate → train (Evaluator) → cli.
"""

from ._version import __version__
from .errors import FidevalError, IncompatibleStatsError, NonFiniteFeaturesError, NumericalError
from .frechet import (
    FrechetReference,
    FrechetResult,
    frechet_details,
    frechet_distance,
    frechet_from_features,
)
from .io.provenance import check_compatible, make_provenance
from .io.statsfile import StatsRecord, load_stats, save_stats
from .stats import GaussianStats, GroupedStats

__all__ = [
    "FidevalError",
    "FrechetReference",
    "FrechetResult",
    "GaussianStats",
    "GroupedStats",
    "IncompatibleStatsError",
    "NonFiniteFeaturesError",
    "NumericalError",
    "StatsRecord",
    "__version__",
    "check_compatible",
    "frechet_details",
    "frechet_distance",
    "frechet_from_features",
    "load_stats",
    "make_provenance",
    "save_stats",
]
