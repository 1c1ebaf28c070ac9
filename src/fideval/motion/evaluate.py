"""The HumanML3D / KIT-ML evaluation loop: generate, embed, score, replicate.

One **replication** (r = 1…R), each with its own random stream
(``numpy.random.SeedSequence(seed).spawn``, child r, the same child whatever R):

1. **ground truth**: a draw of the whole split (:meth:`MotionTextSource.draw`:
   clips shuffled, a caption and a crop per clip, a multiple of ``pool`` clips
   kept) embedded by the evaluator — the FID reference;
2. **prompts**: an independent draw of ``num_samples`` clips (1 024 in MDM's
   loop); the generator is asked for one motion per (caption, length);
3. **MultiModality**: the first ``mm_texts`` prompts are generated
   ``mm_repeats`` times in all (the first generation is the prompt's sample);
4. the suite (:func:`fideval.metrics.motion.motion_suite`) on the generated
   embeddings: R-precision top-1..3 and Matching Score over consecutive pools
   of ``pool`` pairs, FID against the ground truth, Diversity (300 pairs),
   MultiModality (10 pairs);
5. with ``ground_truth_row`` (default), the same suite for a second
   ground-truth draw against the first (the table's "Real motion" row).

Each metric is then summarised over the R replications
(:func:`fideval.metrics.replicate.summarize`): mean, Student-t interval
t_{0.975,R−1}·s/√R (s with ddof = 1) and, for comparison with papers, the
protocol's 1.96·std(ddof=0)/√R. With ``replications="auto"`` the loop stops as
soon as every metric's t half-width is within its tolerance (after at least
``min_replications``), or at ``max_replications``. Stopping on the observed
spread makes the interval slightly optimistic (a few points of coverage at
small R); ``min_replications`` bounds that.

Ground-truth embeddings depend only on the evaluator, the dataset, the seed
stream and the settings below; with ``cache_dir`` they are stored under a key
(SHA-256) of all of these and reused.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..errors import FidevalError
from ..metrics.motion import motion_suite
from ..metrics.replicate import ReplicationSummary, summarize
from .evaluator import T2MEvaluator
from .humanml import MotionTextBatch, MotionTextSource, to_evaluator_space

#: A generator: (captions, lengths in frames) -> motions (B, T ≥ max length, D).
Generator = Callable[[list[str], np.ndarray], Any]

METRICS = ("r_precision", "matching_score", "fid", "diversity", "multimodality")


def replication_streams(seed: int, r: int) -> list[np.random.SeedSequence]:
    """The four streams of replication r (ground truth, real row, prompts, suite).

    Child r of ``SeedSequence(seed)``: the same whatever the number of replications.
    """
    return np.random.SeedSequence(seed, spawn_key=(r,)).spawn(4)


def draw_prompts(
    dataset: MotionTextSource, seed: int, r: int, num_samples: int, pool: int = 32
) -> MotionTextBatch:
    """The prompts of replication r under ``prompts="independent"`` (what the generator gets)."""
    n = min(num_samples, len(dataset))
    return dataset.draw(
        np.random.default_rng(replication_streams(seed, r)[2]), n=n, multiple_of=pool
    )


class GroundTruthGenerator:
    """A "generator" that returns the ground-truth crops it was prompted with.

    Used to check the pipeline (the table's real-motion row, FID ≈ 0 with
    ``prompts="ground_truth"``). Motions come back in the evaluator's
    normalization, so use it with ``generator_mean=None``.
    """

    is_ground_truth = True

    def __call__(self, texts: list[str], lengths: np.ndarray) -> Any:  # pragma: no cover
        raise FidevalError("GroundTruthGenerator is used by fideval.motion.evaluate only")


@dataclass
class MotionEvalResult:
    """What :func:`evaluate` measured (see :meth:`to_dict` and :meth:`table`)."""

    summary: dict[str, ReplicationSummary]
    ground_truth: dict[str, ReplicationSummary] | None
    per_replication: list[dict[str, Any]]
    settings: dict[str, Any]
    provenance: dict[str, Any]
    stopped: str
    seconds: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def replications(self) -> int:
        return len(self.per_replication)

    def to_dict(self) -> dict[str, Any]:
        per_rep = float(np.mean(self.seconds)) if self.seconds else math.nan
        out: dict[str, Any] = {
            "replications": self.replications,
            "stopped": self.stopped,
            "warnings": self.warnings,
            "generated": {k: _mean(s) for k, s in self.summary.items()},
            "intervals": {k: s.to_dict() for k, s in self.summary.items()},
        }
        if self.ground_truth is not None:
            out["ground_truth"] = {k: _mean(s) for k, s in self.ground_truth.items()}
            out["ground_truth_intervals"] = {k: s.to_dict() for k, s in self.ground_truth.items()}
        out["per_replication"] = self.per_replication
        out["timing"] = {
            "seconds": self.seconds,
            "seconds_per_replication": per_rep,
            "projected_seconds_for_20": 20 * per_rep,
        }
        out["settings"] = self.settings
        out["provenance"] = self.provenance
        return out

    def table(self) -> str:
        """The published table: one row per model, mean ± t-interval [protocol interval]."""
        cols = [("R@1", "r_precision", 0), ("R@2", "r_precision", 1), ("R@3", "r_precision", 2)]
        cols += [("MM-Dist", "matching_score", None), ("FID", "fid", None)]
        cols += [("Diversity", "diversity", None), ("MModality", "multimodality", None)]
        rows = [("Real motion", self.ground_truth)] if self.ground_truth else []
        rows.append(("Generated", self.summary))
        lines = [f"{'':<12}" + "".join(f"{c[0]:>26}" for c in cols)]
        for label, summ in rows:
            cells = []
            for _, key, k in cols:
                if summ is None or key not in summ:
                    cells.append(f"{'-':>26}")
                    continue
                s = summ[key]
                m, h, p = (
                    np.atleast_1d(np.asarray(v, dtype=float))
                    for v in (s.mean, s.ci_halfwidth, s.protocol_ci95_halfwidth)
                )
                i = 0 if k is None else k
                if i >= m.size:
                    cells.append(f"{'-':>26}")
                    continue
                cells.append(f"{m[i]:>9.4f} ±{_fmt(h[i])} [{_fmt(p[i])}]")
            lines.append(f"{label:<12}" + "".join(f"{c:>26}" for c in cells))
        r = self.replications
        lines.append(
            f"R = {r} replications ({self.stopped}); ± is the t_{{0.975,{r - 1}}} interval "
            "(ddof=1), [ ] the protocol's 1.96·std(ddof=0)/√R"
        )
        return "\n".join(lines)


def _fmt(v: float) -> str:
    return f"{v:.4f}" if math.isfinite(v) else "  nan "


def _mean(s: ReplicationSummary) -> Any:
    return s.to_dict()["mean"]


def _embed_motions(
    ev: T2MEvaluator, motions: np.ndarray, lens: np.ndarray, bs: int, pad: str
) -> np.ndarray:
    out = [
        ev.motion_embeddings(
            torch.from_numpy(motions[i : i + bs]), torch.from_numpy(lens[i : i + bs]), pad=pad
        )
        .cpu()
        .numpy()
        for i in range(0, len(lens), bs)
    ]
    return np.concatenate(out).astype(np.float64)


def _embed_texts(ev: T2MEvaluator, b: MotionTextBatch, bs: int) -> np.ndarray:
    out = [
        ev.text_embeddings(
            torch.from_numpy(b.word_embs[i : i + bs]),
            torch.from_numpy(b.pos_onehot[i : i + bs]),
            torch.from_numpy(b.cap_lens[i : i + bs]),
        )
        .cpu()
        .numpy()
        for i in range(0, len(b), bs)
    ]
    return np.concatenate(out).astype(np.float64)


def _as_numpy(x: Any, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FidevalError(
            f"{what}: the generator returned {type(x).__name__}, not an array"
        ) from exc


class _GenerationStep:
    """Calls the generator in batches and brings its motions to the evaluator's space."""

    def __init__(
        self, generator: Generator, source: MotionTextSource, mean: Any, std: Any, batch_size: int
    ) -> None:
        self.generator = generator
        self.source = source
        self.gt = bool(getattr(generator, "is_ground_truth", False))
        if mean is None and std is None:
            self.mean = self.std = None
        elif mean is None or std is None:
            raise FidevalError("give both generator_mean and generator_std, or neither")
        else:
            from .humanml import load_mean_std

            self.mean, self.std = load_mean_std(mean, std, source.spec)
        self.batch_size = batch_size
        self.calls = 0

    def __call__(self, prompts: MotionTextBatch, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.gt:
            return prompts.motions[rows], prompts.m_lens[rows]
        motions, lens = [], []
        for i in range(0, len(rows), self.batch_size):
            idx = rows[i : i + self.batch_size]
            texts = [prompts.captions[j] for j in idx]
            want = prompts.m_lens[idx].copy()
            out = _as_numpy(self.generator(texts, want.copy()), "generated motions")
            self.calls += 1
            if out.ndim != 3 or out.shape[0] != len(idx):
                raise FidevalError(
                    f"generated motions: the generator returned shape {out.shape} for {len(idx)} "
                    f"prompts; expected (B, frames, {self.source.spec.dim_pose})"
                )
            if out.shape[1] < int(want.max()):
                raise FidevalError(
                    f"generated motions: {out.shape[1]} frames returned, but lengths up to "
                    f"{int(want.max())} were asked for"
                )
            m, n = to_evaluator_space(
                out,
                want,
                eval_mean=self.source.mean,
                eval_std=self.source.std,
                mean=self.mean,
                std=self.std,
                max_length=self.source.spec.max_length,
            )
            motions.append(m)
            lens.append(n)
        return np.concatenate(motions), np.concatenate(lens)


def _tolerances(tolerance: float | Mapping[str, float] | None) -> dict[str, float]:
    if tolerance is None:
        raise FidevalError(
            "replications='auto' needs a tolerance (a half-width, or one per metric)"
        )
    if isinstance(tolerance, Mapping):
        bad = sorted(set(tolerance) - set(METRICS))
        if bad:
            raise FidevalError(f"tolerance for unknown metrics {bad}; metrics are {list(METRICS)}")
        tol = {k: float(v) for k, v in tolerance.items()}
    else:
        tol = dict.fromkeys(METRICS, float(tolerance))
    if any(not (v > 0) for v in tol.values()):
        raise FidevalError(f"tolerances must be > 0, got {tol}")
    return tol


def _within(summary: Mapping[str, ReplicationSummary], tol: Mapping[str, float]) -> bool:
    for key, t in tol.items():
        if key not in summary:
            continue
        half = np.atleast_1d(np.asarray(summary[key].ci_halfwidth, dtype=float))
        if not np.all(np.isfinite(half)) or np.any(half > t):
            return False
    return True


class _GroundTruthCache:
    def __init__(self, folder: str | Path | None, key: dict[str, Any]) -> None:
        self.folder = None if folder is None else Path(folder)
        self.base = key

    def _path(self, **extra: Any) -> Path | None:
        if self.folder is None:
            return None
        blob = json.dumps({**self.base, **extra}, sort_keys=True, default=str).encode()
        return self.folder / f"t2m-gt-{hashlib.sha256(blob).hexdigest()[:32]}.npz"

    def get(self, **extra: Any) -> dict[str, np.ndarray] | None:
        p = self._path(**extra)
        if p is None or not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError):
            return None  # a damaged cache entry is recomputed

    def put(self, arrays: dict[str, np.ndarray], **extra: Any) -> None:
        p = self._path(**extra)
        if p is None:
            return
        from ..io.atomic import atomic_write

        p.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(p, "wb") as f:
            np.savez(f, **arrays)


def evaluate(
    generator: Generator,
    dataset: MotionTextSource,
    evaluator: T2MEvaluator,
    *,
    generator_mean: Any = None,
    generator_std: Any = None,
    replications: int | str = 20,
    tolerance: float | Mapping[str, float] | None = None,
    min_replications: int = 3,
    max_replications: int = 20,
    num_samples: int = 1024,
    mm_texts: int = 100,
    mm_repeats: int = 30,
    pool: int = 32,
    top_k: int = 3,
    diversity_times: int = 300,
    mm_times: int = 10,
    prompts: str = "independent",
    ground_truth_row: bool = True,
    pad: str = "zero",
    batch_size: int = 32,
    embed_batch: int = 256,
    seed: int = 0,
    confidence: float = 0.95,
    cache_dir: str | Path | None = None,
    progress: bool | Callable[[int, int, float, float], None] = False,
) -> MotionEvalResult:
    """Run the text-to-motion protocol on ``generator`` (module doc) and summarise it.

    Parameters
    ----------
    generator: ``generator(captions, lengths) -> motions`` (B, T ≥ max(lengths), D),
        in the generator's normalization given by ``generator_mean`` /
        ``generator_std`` (e.g. HumanML3D's ``Mean.npy`` / ``Std.npy``; both None:
        motions in feature units); or :class:`GroundTruthGenerator`.
    dataset: the test split (:class:`MotionTextSource`, with the evaluator's mean/std).
    evaluator: the :class:`T2MEvaluator` of the same dataset.
    replications: R, or ``"auto"``: stop when every metric's t half-width is ≤
        ``tolerance`` (a float for all, or ``{metric: half-width}`` in the
        metric's units), after ``min_replications``, at most ``max_replications``.
    num_samples: prompts per replication (MDM: 1 024; a multiple of ``pool`` is kept).
    mm_texts, mm_repeats: MultiModality texts and generations per text (0: skip).
    prompts: ``"independent"`` (the protocol: a draw of its own) or
        ``"ground_truth"`` (the ground-truth draw's captions and lengths: a
        pipeline check, FID exactly 0 with :class:`GroundTruthGenerator`).
    pad: frames past each length, ``"zero"`` or ``"keep"`` (MDM's published loop;
        see :mod:`fideval.motion.evaluator`).
    progress: True for a line per replication on stderr (elapsed, projected
        time), or a callback ``(r, R_max, seconds_this, seconds_total)``.
    """
    if evaluator.dataset != dataset.spec.name:
        raise FidevalError(
            f"the evaluator is the {evaluator.dataset} one, the dataset is {dataset.spec.name}"
        )
    if prompts not in ("independent", "ground_truth"):
        raise FidevalError(f"prompts must be 'independent' or 'ground_truth', got {prompts!r}")
    auto = replications == "auto"
    if auto:
        tol = _tolerances(tolerance)
        if not 2 <= min_replications <= max_replications:
            raise FidevalError(
                "need 2 ≤ min_replications ≤ max_replications, got "
                f"{min_replications}, {max_replications}"
            )
        r_max = max_replications
    else:
        if isinstance(replications, str) or int(replications) < 1:
            raise FidevalError(f"replications must be ≥ 1 or 'auto', got {replications!r}")
        tol, r_max = {}, int(replications)
    if mm_texts and mm_repeats <= mm_times:
        raise FidevalError(f"mm_repeats ({mm_repeats}) must exceed mm_times ({mm_times})")
    gen = _GenerationStep(generator, dataset, generator_mean, generator_std, batch_size)
    n_gen = min(num_samples, len(dataset)) if prompts == "independent" else len(dataset)
    n_gen -= n_gen % pool
    if n_gen < pool:
        raise FidevalError(f"{len(dataset)} clips: fewer than one pool of {pool}")
    if mm_texts > n_gen:
        raise FidevalError(f"mm_texts ({mm_texts}) exceeds the {n_gen} prompts per replication")

    settings = {
        "dataset": dataset.spec.name,
        "split": dataset.split,
        "clips": len(dataset),
        "num_samples": n_gen,
        "mm_texts": mm_texts,
        "mm_repeats": mm_repeats,
        "pool": pool,
        "top_k": top_k,
        "diversity_times": diversity_times,
        "mm_times": mm_times,
        "prompts": prompts,
        "pad": pad,
        "seed": seed,
        "replications": replications,
        "tolerance": tol or None,
        "min_replications": min_replications if auto else None,
        "max_replications": r_max,
        "confidence": confidence,
    }
    cache = _GroundTruthCache(
        cache_dir,
        {
            "evaluator": evaluator.weights_sha256,
            "dataset": dataset.fingerprint,
            "seed": seed,
            "pool": pool,
            "pad": pad,
            "fideval": __version__,
        },
    )

    def gt_draw(stream: np.random.SeedSequence) -> MotionTextBatch:
        return dataset.draw(np.random.default_rng(stream), multiple_of=pool)

    def gt_embed(batch: MotionTextBatch, r: int, tag: str) -> dict[str, np.ndarray]:
        emb = cache.get(replication=r, draw=tag)
        if emb is None:
            emb = {
                "motion": _embed_motions(evaluator, batch.motions, batch.m_lens, embed_batch, pad),
                "text": _embed_texts(evaluator, batch, embed_batch),
            }
            cache.put(emb, replication=r, draw=tag)
        return emb

    suite_kw = {
        "pool": pool,
        "top_k": top_k,
        "diversity_times": diversity_times,
        "mm_times": mm_times,
    }
    per_rep: list[dict[str, Any]] = []
    seconds: list[float] = []
    summary: dict[str, ReplicationSummary] = {}
    gt_summary: dict[str, ReplicationSummary] | None = None
    stopped = "fixed count"
    t_start = time.perf_counter()
    for r in range(r_max):
        t0 = time.perf_counter()
        s_gt, s_gt2, _, s_suite = replication_streams(seed, r)

        gt_batch = gt_draw(s_gt)
        pb = draw_prompts(dataset, seed, r, n_gen, pool) if prompts == "independent" else gt_batch
        start = getattr(generator, "start_replication", None)
        if start is not None:
            start(r, pb, mm_texts if mm_texts else 0, mm_repeats)
        t_gen = time.perf_counter()
        motions, lens = gen(pb, np.arange(len(pb)))
        g_emb = _embed_motions(evaluator, motions, lens, embed_batch, pad)
        mm = None
        if mm_texts:
            rows = np.arange(mm_texts)
            reps = [g_emb[:mm_texts]]
            for _ in range(mm_repeats - 1):
                m2, l2 = gen(pb, rows)
                reps.append(_embed_motions(evaluator, m2, l2, embed_batch, pad))
            mm = np.stack(reps, axis=1)
        gen_seconds = time.perf_counter() - t_gen
        # The ground truth after the generator: a generator error shows before any long step.
        gt_emb = gt_embed(gt_batch, r, "reference")
        p_text = _embed_texts(evaluator, pb, embed_batch) if pb is not gt_batch else gt_emb["text"]
        suite_seed = int(np.random.default_rng(s_suite).integers(2**63 - 1))
        res = motion_suite(
            p_text,
            g_emb,
            gt_emb["motion"],
            mm,
            seed=suite_seed,
            names={"motion": "generated", "gt": "ground truth"},
            **suite_kw,
        )
        entry: dict[str, Any] = {"generated": res}
        if ground_truth_row:
            gt2 = gt_embed(gt_draw(s_gt2), r, "real-row")
            entry["ground_truth"] = motion_suite(
                gt2["text"],
                gt2["motion"],
                gt_emb["motion"],
                None,
                seed=suite_seed,
                names={"motion": "real", "gt": "ground truth"},
                **suite_kw,
            )
        elapsed = time.perf_counter() - t0
        entry["seconds"] = {"total": elapsed, "generate_and_embed": gen_seconds}
        per_rep.append(entry)
        seconds.append(elapsed)
        summary = {
            k: summarize([e["generated"][k] for e in per_rep], name=k, confidence=confidence)
            for k in METRICS
            if k in res
        }
        if ground_truth_row:
            gt_summary = {
                k: summarize(
                    [e["ground_truth"][k] for e in per_rep],
                    name=f"ground truth {k}",
                    confidence=confidence,
                )
                for k in METRICS
                if k in per_rep[0]["ground_truth"]
            }
        _report(progress, r + 1, r_max, elapsed, time.perf_counter() - t_start, auto)
        if auto and r + 1 >= min_replications and _within(summary, tol):
            stopped = f"tolerance reached after {r + 1}"
            break
    else:
        if auto:
            stopped = f"cap of {r_max} reached before the tolerance"
    return MotionEvalResult(
        summary=summary,
        ground_truth=gt_summary,
        per_replication=per_rep,
        settings=settings,
        provenance={
            **evaluator.provenance(),
            "dataset_fingerprint": dataset.fingerprint,
            "fideval_version": __version__,
        },
        stopped=stopped,
        seconds=seconds,
        warnings=sorted(
            {
                w
                for e in per_rep
                for part in ("generated", "ground_truth")
                for w in e.get(part, {}).get("warnings", [])
            }
        ),
    )


def _report(progress: Any, r: int, r_max: int, this: float, total: float, auto: bool) -> None:
    if not progress:
        return
    if callable(progress):
        progress(r, r_max, this, total)
        return
    left = (r_max - r) * total / r
    bound = "at most " if auto else ""
    print(
        f"replication {r}/{r_max}: {this:.1f} s; elapsed {_hms(total)}, "
        f"{bound}{_hms(left)} left (projected {bound}{_hms(total + left)} for {r_max})",
        file=sys.stderr,
        flush=True,
    )


def _hms(s: float) -> str:
    s = round(s)
    return (
        f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"
        if s >= 3600
        else f"{s // 60}m{s % 60:02d}s"
    )
