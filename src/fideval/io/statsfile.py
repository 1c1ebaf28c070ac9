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
from .._text import shown
from ..errors import FidevalError
from ..stats import GaussianStats, GroupedStats
from .atomic import atomic_write
from .npyheader import NpyHeader, check_npz, read_member, sniff

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
                f"{shown(self.path or 'statistics')}: N is unknown (not stored in the file)"
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
            raise FidevalError(f"{shown(path)}: extra key {key!r} would overwrite a statistics key")
        arrays[key] = np.asarray(value)
    target = Path(path)
    if target.suffix != ".npz":
        raise FidevalError(f"{shown(target)}: statistics files must end in .npz")
    with atomic_write(target) as fh:
        np.savez(fh, **arrays)
    return target


class _Archive:
    """An open ``.npz`` with the checked headers of the keys that will be read."""

    def __init__(self, data: Any, path: str, headers: dict[str, NpyHeader]) -> None:
        self.data = data
        self.path = path
        self.headers = headers

    def __getitem__(self, key: str) -> np.ndarray:
        header = self.headers.get(key)
        if header is None:  # not a .npy member: numpy would hand back raw bytes
            raise FidevalError(f"{shown(self.path)}: key {key!r} is not a .npy array member")
        return read_member(self.data, self.path, key, header)


def _native(arr: np.ndarray) -> np.ndarray:
    """``arr`` in the machine's byte order (a big-endian ``>f8`` is valid input)."""
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _real(data: Any, key: str, path: str, ndim: int | None = None) -> np.ndarray:
    """A real-valued array key (complex, strings, objects: an error), native byte order.

    Floating-point arrays keep their stored precision: a float32 covariance carries
    float32 round-off, and the Fréchet kernel reads its tolerance from the dtype.
    Integers become float64.
    """
    arr = _key(data, key, path)
    if arr.dtype.kind not in "fiu":
        raise FidevalError(
            f"{shown(path)}: key {key!r} has dtype {arr.dtype}; expected real numbers"
            + (" (complex values are not silently truncated)" if arr.dtype.kind == "c" else "")
        )
    if ndim is not None and arr.ndim != ndim:
        raise FidevalError(f"{shown(path)}: key {key!r} has shape {arr.shape}; expected {ndim}-D")
    return _native(arr) if arr.dtype.kind == "f" else arr.astype(np.float64)


def _count(data: Any, key: str, path: str) -> int:
    """A sample count: a 0-d non-negative integer."""
    arr = _key(data, key, path)
    if arr.ndim != 0 or arr.dtype.kind not in "iu" or int(arr) < 0:
        raise FidevalError(
            f"{shown(path)}: key {key!r} is {arr.dtype} with shape {arr.shape}; expected a "
            f"non-negative integer sample count"
        )
    return int(arr)


def _key(data: Any, key: str, path: str) -> np.ndarray:
    """``data[key]`` as an array; object arrays are refused (their data is a pickle)."""
    arr = np.asarray(data[key])
    if arr.dtype.hasobject:  # a caller's own mapping; archives refuse in the header
        raise FidevalError(
            f"{shown(path)}: key {key!r} holds Python objects (pickled data), which fideval "
            "does not load; expected a numeric array"
        )
    return arr


def missing_stats_key(path: str, keys: set[str] | list[str]) -> str | None:
    """The message for an archive holding one key of a statistics pair, else ``None``.

    ``"stats.npz: has 'mu' but no 'sigma'; expected mu (d,) and sigma (d, d)"``.
    """
    have = set(keys)
    if any(m in have and c in have for m, c, _ in KNOWN_LAYOUTS):
        return None
    for mean_key, cov_key, _ in KNOWN_LAYOUTS:
        if (mean_key in have) != (cov_key in have):
            got, lacking = (mean_key, cov_key) if mean_key in have else (cov_key, mean_key)
            return (
                f"{shown(path)}: has {got!r} but no {lacking!r}; expected {mean_key} (d,) "
                f"and {cov_key} (d, d)"
            )
    return None


def not_a_stats_file(path: str, exc: BaseException) -> str:
    """The one message for a file that numpy cannot open as an archive."""
    what = (
        "it is not a NumPy archive (numpy took it for pickled data)"
        if isinstance(exc, ValueError)
        else f"it is not a NumPy archive or it is truncated ({shown(exc)})"
    )
    return (
        f"{shown(path)}: not a statistics file: {what}; expected a .npz with keys 'mu' and 'sigma'"
    )


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
            names = ", ".join(f"{shown(path)}#{shown(k)}" for k in sorted(ref.stats))
            raise FidevalError(
                f"{shown(path)}: an EDM2 reference with statistics {sorted(ref.stats)}; name "
                f"the one to use, e.g. {names}"
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


#: Keys read besides the mean and the covariance (when present).
_OPTIONAL_KEYS = ("n", "meta", "group_n", "group_mu", "group_m2")


def _open_npz(p: str) -> Any:
    """``np.load`` of a statistics archive; a lone ``.npy`` is refused before loading."""
    try:
        if sniff(p) == "npy":  # np.load would read the whole array its header claims
            raise FidevalError(f"{shown(p)}: a single .npy array, not a .npz statistics file")
        data = np.load(p, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise FidevalError(not_a_stats_file(p, exc)) from exc
    if not isinstance(data, np.lib.npyio.NpzFile):  # pragma: no cover - sniffed above
        raise FidevalError(f"{shown(p)}: a single .npy array, not a .npz statistics file")
    return data


def _layout(p: str, keys: set[str]) -> tuple[str, str, str]:
    """The first known (mean key, covariance key, layout) present in ``keys``."""
    found = [lay for lay in KNOWN_LAYOUTS if lay[0] in keys and lay[1] in keys]
    if found:
        return found[0]
    message = missing_stats_key(p, keys)
    if message is not None:
        raise FidevalError(message)
    raise FidevalError(
        f"{shown(p)}: no statistics found (keys {sorted(keys)}); expected 'mu' and "
        f"'sigma' (pytorch-fid / clean-fid / fideval) or 'm2' and 's2' "
        f"(denoising-diffusion-pytorch)"
    )


def _meta(data: Any, p: str) -> dict[str, Any]:
    """The provenance JSON of key ``meta``."""
    try:
        meta = json.loads(str(_key(data, "meta", p)))
    except json.JSONDecodeError as exc:
        raise FidevalError(f"{shown(p)}: key 'meta' is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise FidevalError(
            f"{shown(p)}: key 'meta' holds JSON {type(meta).__name__}; expected an object"
        )
    return meta


def load_stats(path: str | os.PathLike[str]) -> StatsRecord:
    """Read statistics from a ``.npz`` file of any supported layout, or one metric of an
    EDM2 reference pickle (``img512.pkl#fd_dinov2``); validate them.

    Every header is checked before its data is read (:mod:`fideval.io.npyheader`):
    object dtypes and claims beyond the member's size are refused without allocating.
    Arrays come back in native byte order.
    """
    p, pickle_key = split_pickle_key(str(path))
    if not os.path.exists(p):
        raise FidevalError(f"{shown(p)}: no such file")
    if p.endswith(".pkl"):
        return _load_edm2(p, pickle_key)
    with _open_npz(p) as npz:
        keys = set(npz.files)
        mean_key, cov_key, _ = _layout(p, keys)
        wanted = [mean_key, cov_key, *(k for k in _OPTIONAL_KEYS if k in keys)]
        return _record(p, keys, _Archive(npz, p, check_npz(p, wanted)))


def _record(p: str, keys: set[str], data: Any) -> StatsRecord:
    """The validated statistics of an open archive (``data[key]`` reads one array)."""
    mean_key, cov_key, layout = _layout(p, keys)
    try:
        mu = _real(data, mean_key, p)
        sigma = _real(data, cov_key, p)
        n = _count(data, "n", p) if "n" in keys else None
        meta = _meta(data, p) if "meta" in keys else {}
        groups = _read_groups(data, keys, p, mu.shape[0]) if "group_n" in keys else None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise FidevalError(
            f"{shown(p)}: corrupt .npz (truncated archive member: {shown(exc)})"
        ) from exc
    if "meta" in keys:
        layout = "fideval"
    validate_moments(mu, sigma, p, mean_key, cov_key)
    if n is None and "n" in meta:
        n = meta["n"]
        if isinstance(n, bool) or not isinstance(n, int):
            raise FidevalError(
                f"{shown(p)}: meta 'n' is {n!r}; expected a whole number of samples ≥ 2"
            )
        where = "meta 'n'"
    else:
        where = "key 'n'"
    if n is not None and n < 2:
        raise FidevalError(
            f"{shown(p)}: {where} is {n}; a covariance needs at least 2 samples (N ≥ 2)"
        )
    return StatsRecord(mu, sigma, n, meta, p, layout, groups)


def stats_from_array_file(af: Any) -> StatsRecord:
    """:func:`load_stats` of an already open :class:`~fideval.data.arrayfile.ArrayFile`
    (its headers were checked when it was opened): the file is not opened again."""
    if not af.is_npz:
        raise FidevalError(f"{shown(af.path)}: a single .npy array, not a .npz statistics file")
    return _record(af.path, set(af.keys), af)


def validate_moments(mu: np.ndarray, sigma: np.ndarray, path: str, mk: str, ck: str) -> None:
    """Shape, finiteness and symmetry checks naming the file and the key."""
    where = shown(path)
    frechet.validate_moments(
        torch.from_numpy(_native(np.asarray(mu))),
        torch.from_numpy(_native(np.asarray(sigma))),
        f"{where}: key {mk!r}",
        f"{where}: key {ck!r}",
    )


def _read_groups(data: Any, keys: set[str], path: str, d: int) -> GroupedStats:
    for key in ("group_n", "group_mu", "group_m2"):
        if key not in keys:
            raise FidevalError(f"{shown(path)}: grouped statistics incomplete, key {key!r} missing")
    gn = _key(data, "group_n", path)
    gmu = _real(data, "group_mu", path, ndim=2)
    gm2 = _real(data, "group_m2", path, ndim=3)
    if gn.ndim != 1 or gn.dtype.kind not in "iu" or (gn < 0).any():
        raise FidevalError(f"{shown(path)}: key 'group_n' must be a 1-D array of sample counts")
    k = int(gn.shape[0])
    if gmu.shape != (k, d) or gm2.shape != (k, d, d):
        raise FidevalError(
            f"{shown(path)}: grouped statistics have shapes group_mu {gmu.shape}, group_m2 "
            f"{gm2.shape} for {k} groups; expected ({k}, {d}) and ({k}, {d}, {d})"
        )
    out = GroupedStats(k, dim=int(gmu.shape[1]))
    for g in range(k):
        out.groups[g] = GaussianStats.from_state_dict(
            {"n": int(gn[g]), "batches": 0, "dim": int(gmu.shape[1]), "mean": gmu[g], "m2": gm2[g]}
        )
    out.n = int(gn.sum())
    return out
