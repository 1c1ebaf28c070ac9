"""Motions generated offline: fideval writes the prompts, the model saves its motions.

For a model that cannot be called from Python in the evaluation process, the
protocol runs in two steps with the same seed:

1. :func:`write_prompts` (``fideval motion-eval --write-prompts DIR``) writes,
   for each replication r, ``DIR/replication_{r:03d}/prompts.json``: the
   captions, their lengths in frames (the ground-truth crop lengths the
   protocol prompts with), the clip names, and how many of the first prompts
   are MultiModality texts (``mm_texts``) and how often they are generated in
   all (``mm_repeats``).
2. The model writes, beside each ``prompts.json``:

   * ``motions.npy`` (N, T, D): one motion per prompt, in prompt order,
     T ≥ the longest length (frames past a prompt's length are ignored);
   * ``mm_motions.npy`` (mm_texts, mm_repeats − 1, T, D): the further
     generations of the first mm_texts prompts (the first is row i of
     ``motions.npy``), when mm_texts > 0.

   in its own normalization (give its mean/std) or in feature units.
3. :class:`SavedMotions` (``--motions DIR``) serves those files to
   :func:`fideval.motion.evaluate` as if it were the generator, after checking
   that each replication's prompts are the ones the evaluation draws.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FidevalError
from .evaluate import draw_prompts
from .humanml import MotionTextBatch, MotionTextSource

FORMAT = "fideval-t2m-prompts-1"


def replication_dir(root: str | Path, r: int) -> Path:
    return Path(root) / f"replication_{r:03d}"


def write_prompts(
    dataset: MotionTextSource,
    folder: str | Path,
    *,
    replications: int = 20,
    seed: int = 0,
    num_samples: int = 1024,
    pool: int = 32,
    mm_texts: int = 100,
    mm_repeats: int = 30,
) -> list[Path]:
    """Write each replication's prompts (module doc); returns the ``prompts.json`` paths."""
    if replications < 1:
        raise FidevalError(f"replications must be ≥ 1, got {replications}")
    out = []
    for r in range(replications):
        pb = draw_prompts(dataset, seed, r, num_samples, pool)
        if mm_texts > len(pb):
            raise FidevalError(f"mm_texts ({mm_texts}) exceeds the {len(pb)} prompts")
        d = replication_dir(folder, r)
        d.mkdir(parents=True, exist_ok=True)
        doc = {
            "format": FORMAT,
            "replication": r,
            "seed": seed,
            "dataset": dataset.spec.name,
            "dataset_fingerprint": dataset.fingerprint,
            "dim_pose": dataset.spec.dim_pose,
            "mm_texts": mm_texts,
            "mm_repeats": mm_repeats if mm_texts else 0,
            "names": pb.names,
            "captions": pb.captions,
            "lengths": pb.m_lens.tolist(),
        }
        p = d / "prompts.json"
        p.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        out.append(p)
    return out


def _load(path: Path, ndim: int, what: str) -> np.ndarray:
    if not path.is_file():
        raise FidevalError(f"{path}: missing ({what})")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise FidevalError(f"{path}: not a readable .npy array ({exc})") from exc
    if arr.ndim != ndim:
        raise FidevalError(f"{path}: {what} must have {ndim} dimensions, got shape {arr.shape}")
    return arr


class SavedMotions:
    """The generator of :func:`fideval.motion.evaluate` for motions saved on disk."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not replication_dir(self.folder, 0).is_dir():
            raise FidevalError(
                f"{self.folder}: no replication_000/ folder; write the prompts first "
                "(fideval motion-eval --write-prompts)"
            )
        self._rows: list[np.ndarray] = []
        self._dir = self.folder

    def available(self) -> int:
        """How many consecutive replications have a ``motions.npy``."""
        r = 0
        while (replication_dir(self.folder, r) / "motions.npy").is_file():
            r += 1
        return r

    def start_replication(
        self, r: int, prompts: MotionTextBatch, mm_texts: int, mm_repeats: int
    ) -> None:
        d = replication_dir(self.folder, r)
        self._dir = d
        pj = d / "prompts.json"
        if not pj.is_file():
            raise FidevalError(f"{pj}: missing; replication {r} was not prepared")
        try:
            doc = json.loads(pj.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FidevalError(f"{pj}: not readable JSON ({exc})") from exc
        if doc.get("format") != FORMAT:
            raise FidevalError(f"{pj}: not a fideval prompts file (format {doc.get('format')!r})")
        if doc.get("captions") != prompts.captions or doc.get("lengths") != prompts.m_lens.tolist():
            raise FidevalError(
                f"{pj}: its prompts differ from the ones this evaluation draws for replication {r} "
                f"(written with seed {doc.get('seed')}, {len(doc.get('captions', []))} prompts); "
                "use the same dataset, seed, --num-samples and --pool as --write-prompts"
            )
        if int(doc.get("mm_texts", 0)) != mm_texts or (
            mm_texts and int(doc.get("mm_repeats", 0)) != mm_repeats
        ):
            raise FidevalError(
                f"{pj}: written for mm_texts={doc.get('mm_texts')}, "
                f"mm_repeats={doc.get('mm_repeats')}; this evaluation uses {mm_texts}, {mm_repeats}"
            )
        motions = _load(d / "motions.npy", 3, "generated motions (N, T, D)")
        n = len(prompts)
        if motions.shape[0] != n:
            raise FidevalError(f"{d / 'motions.npy'}: {motions.shape[0]} motions for {n} prompts")
        rows = [motions[i] for i in range(n)]
        if mm_texts:
            mm = _load(d / "mm_motions.npy", 4, "MultiModality motions (texts, repeats − 1, T, D)")
            if mm.shape[:2] != (mm_texts, mm_repeats - 1):
                raise FidevalError(
                    f"{d / 'mm_motions.npy'}: shape {mm.shape}, "
                    f"expected ({mm_texts}, {mm_repeats - 1}, T, D)"
                )
            for j in range(mm_repeats - 1):
                rows.extend(mm[i, j] for i in range(mm_texts))
        self._rows = rows[::-1]  # served from the end

    def __call__(self, texts: list[str], lengths: np.ndarray) -> Any:
        if len(self._rows) < len(texts):
            raise FidevalError(f"{self._dir}: fewer saved motions than prompts asked for")
        out = [self._rows.pop() for _ in texts]
        widths = {m.shape for m in out}
        if len(widths) > 1:
            raise FidevalError(f"{self._dir}: motions of different shapes {sorted(widths)}")
        return np.stack(out)
