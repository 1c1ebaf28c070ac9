"""fideval: fast, numerically robust and honest FID and companion metrics.

The flow (each stage a module or folder): data → features → streaming (the one path:
a source resolved once, streamed once into every consumer) → stats → frechet →
metrics / estimate → suite / api → train (Evaluator) → cli. See docs/architecture.md.
"""

from ._version import __version__
from .api import FID, fid
from .errors import FidevalError, IncompatibleStatsError, NonFiniteFeaturesError, NumericalError
from .features.base import Extractor, as_extractor
from .features.registry import extractor, extractor_names, register_extractor
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
from .suite import EvalResult, compare, evaluate

__all__ = [
    "FID",
    "EvalResult",
    "Extractor",
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
    "as_extractor",
    "check_compatible",
    "compare",
    "evaluate",
    "extractor",
    "extractor_names",
    "fid",
    "frechet_details",
    "frechet_distance",
    "frechet_from_features",
    "load_stats",
    "make_provenance",
    "register_extractor",
    "save_stats",
]


def __getattr__(name: str):  # subpackages loaded on first use: fideval.motion, …
    import importlib

    if name in ("motion", "metrics", "estimate", "train", "features", "data", "io"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fideval' has no attribute {name!r}")
