"""Statistics files (``.npz``): pytorch-fid compatible, with N and provenance.

Written keys:

* ``mu`` (d,) float64 and ``sigma`` (d, d) float64, ddof=1 — pytorch-fid and clean-fid
  read the file unchanged;
* ``n`` — int64 scalar, the sample count N;
* ``meta`` — 0-d unicode array holding the provenance as JSON;
* optional grouped statistics ``group_n`` (K,), ``group_mu`` (K, d), ``group_m2`` (K, d, d).

Read: the above; pytorch-fid / clean-fid / guided-diffusion reference batches (``mu``,
``sigma``, other keys ignored); denoising-diffusion-pytorch's ``dataset_stats.npz``
(``m2``, ``s2``). Always ``allow_pickle=False``; every error names the file and the key.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import frechet
from ..errors import FidevalError
from ..stats import GaussianStats, GroupedStats
from .atomic import atomic_write

#: Key pairs tried in order when reading (mean key, covariance key, format name).
KNOWN_LAYOUTS: tuple[tuple[str, str, str], ...] = (
    ("mu", "sigma", "pytorch-fid"),
    ("m2", "s2", "denoising-diffusion-pytorch"),
)


@dataclass
class StatsRecord:
    """Gaussian statistics read from (or to be written to) a file."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    layout: str = "fideval"
    groups: GroupedStats | None = None

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    def to_stats(self) -> GaussianStats:
        """As a :class:`GaussianStats` (needs N)."""
        if self.n is None:
            raise FidevalError(
                f"{self.path or 'statistics'}: N is unknown (not stored in the file)"
            )
        return GaussianStats.from_moments(self.n, self.mu, self.sigma)


def save_stats(
    path: str | os.PathLike[str],
    stats: GaussianStats | GroupedStats | StatsRecord,
    meta: dict[str, Any] | None = None,
    *,
    save_groups: bool = False,
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write statistics atomically to ``path`` (a ``.npz``); returns the path.

    ``extra`` adds arrays under other keys (readers of the statistics ignore them).

    ``save_groups`` also stores the per-group statistics of a :class:`GroupedStats`
    (K·d² values: large at d=2048).
    """
    groups = stats if isinstance(stats, GroupedStats) else None
    if isinstance(stats, StatsRecord):
        mu, sigma, n = stats.mu, stats.sigma, stats.n
        meta = {**stats.meta, **(meta or {})}
        groups = groups or stats.groups
    else:
        total = stats.total() if isinstance(stats, GroupedStats) else stats
        mu, sigma, n = total.mean, total.cov, total.n
    meta = dict(meta or {})
    if n is not None:
        meta.setdefault("n", int(n))
    arrays: dict[str, np.ndarray] = {
        "mu": np.asarray(mu, dtype=np.float64),
        "sigma": np.asarray(sigma, dtype=np.float64),
        "meta": np.array(json.dumps(meta, sort_keys=True, default=str)),
    }
    if n is not None:
        arrays["n"] = np.array(int(n), dtype=np.int64)
    if save_groups and groups is not None:
        parts = [groups.group(g) for g in range(groups.k)]
        arrays["group_n"] = np.array([p.n for p in parts], dtype=np.int64)
        arrays["group_mu"] = np.stack([p.mean for p in parts])
        arrays["group_m2"] = np.stack([p.m2_tensor.cpu().numpy() for p in parts])
    for key, value in (extra or {}).items():
        if key in arrays or key.startswith("group_"):
            raise FidevalError(f"{path}: extra key {key!r} would overwrite a statistics key")
        arrays[key] = np.asarray(value)
    target = Path(path)
    if target.suffix != ".npz":
        raise FidevalError(f"{target}: statistics files must end in .npz")
    with atomic_write(target) as fh:
        np.savez(fh, **arrays)
    return target


def _real(data: Any, key: str, path: str, ndim: int | None = None) -> np.ndarray:
    """A real-valued array key (complex, strings, objects: an error).

    Floating-point arrays keep their stored dtype: a float32 covariance carries float32
    round-off, and the Fréchet kernel reads its tolerance from the dtype. Integers become
    float64.
    """
    arr = np.asarray(_key(data, key, path))
    if arr.dtype.kind not in "fiu":
        raise FidevalError(
            f"{path}: key {key!r} has dtype {arr.dtype}; expected real numbers"
            + (" (complex values are not silently truncated)" if arr.dtype.kind == "c" else "")
        )
    if ndim is not None and arr.ndim != ndim:
        raise FidevalError(f"{path}: key {key!r} has shape {arr.shape}; expected {ndim}-D")
    return arr if arr.dtype.kind == "f" else arr.astype(np.float64)


def _count(data: Any, key: str, path: str) -> int:
    """A sample count: a 0-d non-negative integer."""
    arr = np.asarray(_key(data, key, path))
    if arr.ndim != 0 or arr.dtype.kind not in "iu" or int(arr) < 0:
        raise FidevalError(
            f"{path}: key {key!r} is {arr.dtype} with shape {arr.shape}; expected a "
            f"non-negative integer sample count"
        )
    return int(arr)


def _key(data: Any, key: str, path: str) -> np.ndarray:
    try:
        return data[key]
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise FidevalError(
            f"{path}: key {key!r} holds Python objects (pickled data), which fideval does "
            f"not load; expected a numeric array"
        ) from exc


def not_a_stats_file(path: str, exc: BaseException) -> str:
    """The one message for a file that numpy cannot open as an archive."""
    what = (
        "it is not a NumPy archive (numpy took it for pickled data)"
        if isinstance(exc, ValueError)
        else f"it is not a NumPy archive or it is truncated ({exc})"
    )
    return f"{path}: not a statistics file: {what}; expected a .npz with keys 'mu' and 'sigma'"


def split_pickle_key(path: str) -> tuple[str, str | None]:
    """``"ref.pkl#fd_dinov2"`` → ``("ref.pkl", "fd_dinov2")``; other paths unchanged."""
    base, sep, key = path.rpartition("#")
    if sep and base.endswith(".pkl"):
        return base, key
    return path, None


def _load_edm2(path: str, key: str | None) -> StatsRecord:
    """One metric's statistics from an EDM2 reference pickle (restricted unpickler)."""
    from .edm2_pickle import EDM2_METRIC_EXTRACTORS, read_edm2_reference

    ref = read_edm2_reference(path)
    if key is None:
        if len(ref.stats) != 1:
            names = ", ".join(f"{path}#{k}" for k in sorted(ref.stats))
            raise FidevalError(
                f"{path}: an EDM2 reference with statistics {sorted(ref.stats)}; name the one "
                f"to use, e.g. {names}"
            )
        (key,) = ref.stats
    mu, sigma = ref.mu_sigma(key)
    meta: dict[str, Any] = {"source": path, "edm2_metric": key, "dims": int(mu.shape[0])}
    if key in EDM2_METRIC_EXTRACTORS:
        meta["extractor"] = EDM2_METRIC_EXTRACTORS[key][0]
        if key == "fd_dinov2":
            meta["profile"] = "edm2"
    validate_moments(mu, sigma, path, f"{key}.mu", f"{key}.sigma")
    return StatsRecord(mu, sigma, ref.num_images, meta, f"{path}#{key}", "edm2")


def load_stats(path: str | os.PathLike[str]) -> StatsRecord:
    """Read statistics from a ``.npz`` file of any supported layout, or one metric of an
    EDM2 reference pickle (``img512.pkl#fd_dinov2``); validate them."""
    p, pickle_key = split_pickle_key(str(path))
    if p.endswith(".pkl"):
        if not os.path.exists(p):
            raise FidevalError(f"{p}: no such file")
        return _load_edm2(p, pickle_key)
    if not os.path.exists(p):
        raise FidevalError(f"{p}: no such file")
    try:
        data = np.load(p, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise FidevalError(not_a_stats_file(p, exc)) from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise FidevalError(f"{p}: a single .npy array, not a .npz statistics file")
    with data:
        try:
            keys = set(data.files)
            found = [lay for lay in KNOWN_LAYOUTS if lay[0] in keys and lay[1] in keys]
            if not found:
                raise FidevalError(
                    f"{p}: no statistics found (keys {sorted(keys)}); expected 'mu' and "
                    f"'sigma' (pytorch-fid / clean-fid / fideval) or 'm2' and 's2' "
                    f"(denoising-diffusion-pytorch)"
                )
            mean_key, cov_key, layout = found[0]
            mu = _real(data, mean_key, p)
            sigma = _real(data, cov_key, p)
            n = _count(data, "n", p) if "n" in keys else None
            meta: dict[str, Any] = {}
            if "meta" in keys:
                try:
                    meta = json.loads(str(_key(data, "meta", p)))
                except json.JSONDecodeError as exc:
                    raise FidevalError(f"{p}: key 'meta' is not valid JSON ({exc})") from exc
                if not isinstance(meta, dict):
                    raise FidevalError(
                        f"{p}: key 'meta' holds JSON {type(meta).__name__}; expected an object"
                    )
            groups = _read_groups(data, keys, p, mu.shape[0]) if "group_n" in keys else None
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise FidevalError(f"{p}: corrupt .npz (truncated archive member: {exc})") from exc
    if "meta" in keys:
        layout = "fideval"
    validate_moments(mu, sigma, p, mean_key, cov_key)
    if n is None and isinstance(meta.get("n"), int):
        n = meta["n"]
    return StatsRecord(mu, sigma, n, meta, p, layout, groups)


def validate_moments(mu: np.ndarray, sigma: np.ndarray, path: str, mk: str, ck: str) -> None:
    """Shape, finiteness and symmetry checks naming the file and the key."""
    frechet.validate_moments(
        torch.from_numpy(mu), torch.from_numpy(sigma), f"{path}: key {mk!r}", f"{path}: key {ck!r}"
    )


def _read_groups(data: Any, keys: set[str], path: str, d: int) -> GroupedStats:
    for key in ("group_n", "group_mu", "group_m2"):
        if key not in keys:
            raise FidevalError(f"{path}: grouped statistics incomplete, key {key!r} missing")
    gn = np.asarray(_key(data, "group_n", path))
    gmu = _real(data, "group_mu", path, ndim=2)
    gm2 = _real(data, "group_m2", path, ndim=3)
    if gn.ndim != 1 or gn.dtype.kind not in "iu" or (gn < 0).any():
        raise FidevalError(f"{path}: key 'group_n' must be a 1-D array of sample counts")
    k = int(gn.shape[0])
    if gmu.shape != (k, d) or gm2.shape != (k, d, d):
        raise FidevalError(
            f"{path}: grouped statistics have shapes group_mu {gmu.shape}, group_m2 "
            f"{gm2.shape} for {k} groups; expected ({k}, {d}) and ({k}, {d}, {d})"
        )
    out = GroupedStats(k, dim=int(gmu.shape[1]))
    for g in range(k):
        out.groups[g] = GaussianStats.from_state_dict(
            {"n": int(gn[g]), "batches": 0, "dim": int(gmu.shape[1]), "mean": gmu[g], "m2": gm2[g]}
        )
    out.n = int(gn.sum())
    return out
