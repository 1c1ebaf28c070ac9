"""HumanML3D and KIT-ML as the text-to-motion protocol reads them.

**Folder** (HumanML3D's layout, KIT-ML's is the same)::

    new_joint_vecs/<name>.npy   motion features (frames, D), D = 263 (HumanML3D) or 251 (KIT)
    texts/<name>.txt            captions, one per line: caption#word/POS …#from#to
    test.txt                    the names of the split, one per line

**Clips.** A motion of n frames is used when ``min_length ≤ n < 200``
(min_length 40 for HumanML3D, 24 for KIT). A caption with from = to = 0 (or
NaN) describes the whole motion; one with a time span describes the frames
``[int(from·20), int(to·20))``, which become a clip of their own (with that one
caption) under the same length rule. A motion whose captions all have spans is
used only through its segments.

**Draw** (one replication; :meth:`MotionTextSource.draw`): the clips in a
random order, and for each clip independently:

* a caption drawn uniformly from its captions;
* a length: n floored to a multiple of 4 (probability 2/3), or that minus 4
  (probability 1/3) — the protocol's "single"/"double" coin, unit_length 4;
* a crop start drawn uniformly in [0, n − length];
* the crop normalized with the **evaluator's** mean and std (``t2m_mean.npy``
  / ``t2m_std.npy`` or ``kit_mean.npy`` / ``kit_std.npy``, not HumanML3D's
  ``Mean.npy`` / ``Std.npy``): (x − mean) / std, in the units of std;
* then zero frames up to 196 (zeros *after* normalizing: the padding is the
  normalized mean pose, and the evaluator's movement encoder sees frames L,
  L+1, L+2 past the length L; fideval zeroes them for generated motions too,
  see :mod:`fideval.motion.evaluator`).

Random draws use a ``numpy.random.Generator`` (the protocol uses Python's
``random`` and NumPy's global state), so a replication matches the protocol in
distribution, not draw for draw.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FidevalError
from .evaluator import DIM_POSE, UNIT_LENGTH, canonical_dataset
from .vectorizer import Caption, WordVectorizer, read_captions

#: Longest motion the evaluator reads (frames); clips of ≥ 200 frames are dropped.
MAX_MOTION_LENGTH = 196
MAX_SOURCE_LENGTH = 200
FPS = 20


@dataclass(frozen=True)
class DatasetSpec:
    """The protocol's constants for one dataset (frames at 20 fps)."""

    name: str
    dim_pose: int
    min_length: int
    eval_mean_file: str
    eval_std_file: str
    max_length: int = MAX_MOTION_LENGTH
    max_source_length: int = MAX_SOURCE_LENGTH
    unit_length: int = UNIT_LENGTH
    fps: int = FPS


DATASETS: dict[str, DatasetSpec] = {
    "humanml": DatasetSpec("humanml", DIM_POSE["humanml"], 40, "t2m_mean.npy", "t2m_std.npy"),
    "kit": DatasetSpec("kit", DIM_POSE["kit"], 24, "kit_mean.npy", "kit_std.npy"),
}


def dataset_spec(dataset: str | DatasetSpec) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``"humanml"`` (``"t2m"``, ``"humanml3d"``) or ``"kit"``."""
    if isinstance(dataset, DatasetSpec):
        return dataset
    return DATASETS[canonical_dataset(dataset)]


def _vector(x: Any, dim: int, what: str) -> np.ndarray:
    where = str(x) if isinstance(x, str | Path) else what
    if isinstance(x, str | Path):
        try:
            x = np.load(Path(x), allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise FidevalError(f"cannot read {what} {where}: {exc}") from exc
    v = np.asarray(x, dtype=np.float64)
    if v.shape != (dim,):
        raise FidevalError(f"{where}: {what} has shape {v.shape}, expected ({dim},)")
    if not np.all(np.isfinite(v)):
        raise FidevalError(f"{where}: {what} contains NaN or Inf")
    return v


def load_mean_std(mean: Any, std: Any, dataset: str | DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (D,) float64 from .npy paths or arrays; std must be > 0.

    For the evaluator these are ``t2m_mean.npy``/``t2m_std.npy`` (HumanML3D,
    D = 263) or ``kit_mean.npy``/``kit_std.npy`` (KIT, D = 251).
    """
    spec = dataset_spec(dataset)
    m = _vector(mean, spec.dim_pose, "mean")
    s = _vector(std, spec.dim_pose, "std")
    bad = np.nonzero(s <= 0)[0]
    if bad.size:
        raise FidevalError(f"std: channels {bad[:10].tolist()} are ≤ 0; cannot normalize")
    return m, s


def protocol_length(n: int, coin: bool, unit_length: int = UNIT_LENGTH) -> int:
    """Crop length of an n-frame clip: ⌊n/u⌋·u, or (⌊n/u⌋ − 1)·u when ``coin`` ("double")."""
    units = n // unit_length - (1 if coin else 0)
    if units < 1:
        raise FidevalError(
            f"a clip of {n} frames is under the minimum of {unit_length * (2 if coin else 1)} "
            f"frames for this crop (unit_length {unit_length})"
        )
    return units * unit_length


def draw_crop(n: int, rng: np.random.Generator, unit_length: int = UNIT_LENGTH) -> tuple[int, int]:
    """(start, length) of the protocol's random crop of an n-frame clip (module doc)."""
    coin = bool(rng.integers(3) == 2)  # "single", "single", "double"
    length = protocol_length(n, coin, unit_length)
    start = int(rng.integers(0, n - length + 1))
    return start, length


def check_motion(motion: Any, dim_pose: int, what: str = "motion") -> np.ndarray:
    """A (frames, D) finite float array with D = ``dim_pose``; errors name ``what``."""
    m = np.asarray(motion)
    if m.ndim != 2 or m.shape[1] != dim_pose:
        other = {v: k for k, v in DIM_POSE.items()}.get(m.shape[-1] if m.ndim else -1)
        hint = f" (the {other} width)" if other else ""
        raise FidevalError(
            f"{what}: shape {m.shape}{hint}; expected (frames, {dim_pose}) motion features"
        )
    if not np.issubdtype(m.dtype, np.number) or not np.all(np.isfinite(m)):
        raise FidevalError(f"{what}: not finite real numbers")
    return m


def pad_motions(
    motions: Sequence[np.ndarray], lengths: Sequence[int], max_length: int = MAX_MOTION_LENGTH
) -> np.ndarray:
    """(B, max_length, D) float32: motion i's first ``lengths[i]`` frames, zeros after."""
    if not motions:
        raise FidevalError("no motions to pad")
    d = motions[0].shape[-1]
    out = np.zeros((len(motions), max_length, d), dtype=np.float32)
    for i, (m, n) in enumerate(zip(motions, lengths, strict=True)):
        if n > max_length or n > m.shape[0]:
            raise FidevalError(
                f"motion {i}: length {n} exceeds its {m.shape[0]} frames or {max_length}"
            )
        out[i, :n] = m[:n]
    return out


def to_evaluator_space(
    motions: Any,
    lengths: Any,
    *,
    eval_mean: np.ndarray,
    eval_std: np.ndarray,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    max_length: int = MAX_MOTION_LENGTH,
    what: str = "generated motions",
) -> tuple[np.ndarray, np.ndarray]:
    """Generated motions (B, T, D) → the evaluator's input (B, max_length, D), lengths (B,).

    x_eval = (x·std + mean − eval_mean) / eval_std on the first L frames of
    each motion (x itself when ``mean``/``std`` are None: motions in feature
    units), zeros after; L ≤ max_length, L ≥ 4.
    """
    m = np.asarray(motions)
    d = eval_mean.shape[0]
    if m.ndim != 3 or m.shape[2] != d:
        other = {v: k for k, v in DIM_POSE.items()}.get(m.shape[-1] if m.ndim else -1)
        hint = f" (the {other} width)" if other else ""
        raise FidevalError(f"{what}: shape {m.shape}{hint}; expected (B, frames, {d})")
    n = np.asarray(lengths)
    if n.shape != (m.shape[0],) or not np.issubdtype(n.dtype, np.integer):
        raise FidevalError(
            f"{what}: lengths {n.shape} {n.dtype}, expected ({m.shape[0]},) integers"
        )
    bad = np.nonzero((n < UNIT_LENGTH) | (n > min(max_length, m.shape[1])))[0]
    if bad.size:
        i = int(bad[0])
        raise FidevalError(
            f"{what}: length {int(n[i])} of row {i} is outside [{UNIT_LENGTH}, "
            f"{min(max_length, m.shape[1])}] (minimum {UNIT_LENGTH} frames; at most "
            f"{max_length} and the {m.shape[1]} frames given)"
        )
    x = m[:, :max_length].astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise FidevalError(f"{what}: NaN or Inf in the motions")
    if (mean is None) != (std is None):
        raise FidevalError("give both the generator's mean and std, or neither")
    if mean is not None:
        x = x * std + mean
    x = (x - eval_mean) / eval_std
    out = np.zeros((m.shape[0], max_length, d), dtype=np.float32)
    for i, li in enumerate(n):
        out[i, :li] = x[i, :li]
    return out, n.astype(np.int64)


@dataclass(frozen=True)
class Clip:
    """One protocol clip: its name, raw motion features (n, D) and captions."""

    name: str
    motion: np.ndarray = field(repr=False)
    captions: tuple[Caption, ...]

    @property
    def length(self) -> int:
        return int(self.motion.shape[0])


@dataclass
class MotionTextBatch:
    """Ground-truth pairs of one draw, ready for the evaluator (arrays in input order).

    ``motions`` (B, 196, D) float32 in the evaluator's normalization, zero after
    ``m_lens``; ``word_embs`` (B, 22, 300), ``pos_onehot`` (B, 22, 15),
    ``cap_lens`` (B,); ``captions`` and ``tokens`` the drawn caption of each
    clip (what a generator is prompted with); ``names`` the clip names.
    """

    names: list[str]
    captions: list[str]
    tokens: list[tuple[str, ...]]
    word_embs: np.ndarray
    pos_onehot: np.ndarray
    cap_lens: np.ndarray
    motions: np.ndarray
    m_lens: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


def _read_split(path: Path) -> list[str]:
    try:
        names = [s.strip() for s in path.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise FidevalError(f"cannot read the split file {path}: {exc}") from exc
    names = [s for s in names if s]
    if not names:
        raise FidevalError(f"{path}: no clip names")
    return names


class MotionTextSource:
    """Ground-truth clips of a HumanML3D / KIT-ML split, drawn as the protocol does.

    Parameters
    ----------
    root: the dataset folder (``new_joint_vecs/``, ``texts/``, ``<split>.txt``).
    dataset: ``"humanml"`` or ``"kit"``.
    vectorizer: a :class:`WordVectorizer` (or the GloVe folder to read one from).
    mean, std: the **evaluator's** mean and std (paths or arrays; module doc).
    split: the split file's name without ``.txt`` (``"test"``).
    on_missing: ``"error"`` (default) raises when a listed clip has no motion
        or text file; ``"skip"`` drops it (what the protocol's loader does,
        silently) and counts it in :attr:`skipped`.

    :attr:`clips` holds the usable clips; :attr:`skipped` counts the others by
    reason (too short, too long, missing files).
    """

    def __init__(
        self,
        root: str | Path,
        dataset: str = "humanml",
        *,
        vectorizer: WordVectorizer | str | Path,
        mean: Any,
        std: Any,
        split: str = "test",
        on_missing: str = "error",
    ) -> None:
        self.spec = dataset_spec(dataset)
        self.root = Path(root)
        if on_missing not in ("error", "skip"):
            raise FidevalError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
        for sub in ("new_joint_vecs", "texts"):
            if not (self.root / sub).is_dir():
                raise FidevalError(
                    f"{self.root}: no {sub}/ folder; expected a HumanML3D / KIT-ML folder with "
                    "new_joint_vecs/, texts/ and the split file"
                )
        self.vectorizer = (
            vectorizer
            if isinstance(vectorizer, WordVectorizer)
            else WordVectorizer.from_dir(vectorizer)
        )
        self.mean, self.std = load_mean_std(mean, std, self.spec)
        self.split = split
        self.skipped: Counter[str] = Counter()
        self.clips: list[Clip] = []
        missing: list[str] = []
        for name in _read_split(self.root / f"{split}.txt"):
            mpath = self.root / "new_joint_vecs" / f"{name}.npy"
            tpath = self.root / "texts" / f"{name}.txt"
            if not mpath.is_file() or not tpath.is_file():
                missing.append(name)
                continue
            self._add(name, mpath, tpath)
        if missing:
            if on_missing == "error":
                raise FidevalError(
                    f"{self.root}: {len(missing)} clip(s) of {split}.txt have no "
                    f"new_joint_vecs/*.npy or texts/*.txt (first: {missing[:5]}); "
                    "pass on_missing='skip' to drop them"
                )
            self.skipped["missing file"] += len(missing)
        if not self.clips:
            raise FidevalError(
                f"{self.root}: no clip of {split}.txt is usable (skipped: {dict(self.skipped)}); "
                f"clips need {self.spec.min_length} ≤ frames < {self.spec.max_source_length}"
            )
        self.clips.sort(key=lambda c: (c.length, c.name))
        self._fingerprint = ""

    @property
    def fingerprint(self) -> str:
        """SHA-256 of everything a draw depends on: dataset constants, clips (names,
        frames, captions), the evaluator mean/std and the word vectors."""
        if not self._fingerprint:
            h = hashlib.sha256()
            h.update(repr(self.spec).encode())
            h.update(self.mean.tobytes() + self.std.tobytes())
            h.update(self.vectorizer.sha256.encode())
            for c in self.clips:
                h.update(f"{c.name}:{c.motion.shape}".encode())
                h.update(np.ascontiguousarray(c.motion).tobytes())
                for cap in c.captions:
                    h.update(repr((cap.text, cap.tokens)).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def _ok_length(self, n: int) -> bool:
        if n < self.spec.min_length:
            self.skipped["shorter than min_length"] += 1
            return False
        if n >= self.spec.max_source_length:
            self.skipped[f"{self.spec.max_source_length}+ frames"] += 1
            return False
        return True

    def _add(self, name: str, mpath: Path, tpath: Path) -> None:
        try:
            raw = np.load(mpath, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise FidevalError(f"cannot read motion {mpath}: {exc}") from exc
        motion = check_motion(raw, self.spec.dim_pose, str(mpath)).astype(np.float32)
        if not self._ok_length(motion.shape[0]):
            return
        whole: list[Caption] = []
        for k, cap in enumerate(read_captions(tpath)):
            if cap.whole_motion:
                whole.append(cap)
                continue
            a, b = int(cap.start * self.spec.fps), int(cap.end * self.spec.fps)
            seg = motion[a:b]
            if self._ok_length(seg.shape[0]):
                self.clips.append(Clip(f"{name}#{k}", seg, (cap,)))
        if whole:
            self.clips.append(Clip(name, motion, tuple(whole)))

    def __len__(self) -> int:
        return len(self.clips)

    def draw(
        self,
        rng: np.random.Generator,
        n: int | None = None,
        *,
        multiple_of: int = 1,
    ) -> MotionTextBatch:
        """One replication's ground truth: clips in a random order, captions and crops drawn.

        ``n``: how many clips (default all); ``multiple_of``: keep a multiple of
        it (the protocol's loader drops its last incomplete batch of 32).
        """
        total = len(self.clips) if n is None else int(n)
        if not 1 <= total <= len(self.clips):
            raise FidevalError(
                f"asked for {total} clips; the {self.split} split has {len(self.clips)}"
            )
        total -= total % max(1, multiple_of)
        if total < 1:
            raise FidevalError(f"{len(self.clips)} clips: fewer than one pool of {multiple_of}")
        order = rng.permutation(len(self.clips))[:total]
        names, captions, tokens, crops, lens = [], [], [], [], []
        for i in order:
            clip = self.clips[int(i)]
            cap = clip.captions[int(rng.integers(len(clip.captions)))]
            start, length = draw_crop(clip.length, rng, self.spec.unit_length)
            seg = (clip.motion[start : start + length].astype(np.float64) - self.mean) / self.std
            names.append(clip.name)
            captions.append(cap.text)
            tokens.append(cap.tokens)
            crops.append(seg)
            lens.append(length)
        word_embs, pos_onehot, cap_lens = self.vectorizer.batch(tokens)
        return MotionTextBatch(
            names=names,
            captions=captions,
            tokens=tokens,
            word_embs=word_embs,
            pos_onehot=pos_onehot,
            cap_lens=cap_lens,
            motions=pad_motions(crops, lens, self.spec.max_length),
            m_lens=np.asarray(lens, dtype=np.int64),
        )
