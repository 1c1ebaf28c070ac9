"""``fideval motion-eval``: the HumanML3D / KIT-ML protocol end to end, model to table."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import FidevalError
from . import _common


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "motion-eval",
        help="text-to-motion evaluation (HumanML3D / KIT-ML): generate, embed, table",
        description="Runs the text-to-motion protocol: per replication, a ground-truth draw "
        "of the split (random caption and crop per clip), prompts (captions and lengths) for "
        "the generator, its motions embedded by the evaluator (finest.tar), then R-precision "
        "top-1/2/3, Matching Score, FID, Diversity and MultiModality; the table shows the mean, "
        "the t-interval (ddof=1) and the protocol's 1.96*std(ddof=0)/sqrt(R) interval. "
        "The generator is a Python callable (--generator), motions saved on disk (--motions, "
        "after --write-prompts), or the ground truth itself (--ground-truth, a pipeline check).",
    )
    g = p.add_argument_group("data and evaluator")
    g.add_argument(
        "--dataset", default="humanml", choices=("humanml", "kit"), help="(default humanml)"
    )
    g.add_argument(
        "--data", required=True, help="dataset folder: new_joint_vecs/, texts/, test.txt"
    )
    g.add_argument("--split", default="test", help="split file name without .txt (default test)")
    g.add_argument("--evaluator", required=True, help="the evaluator's finest.tar")
    g.add_argument(
        "--eval-mean",
        help="evaluator mean (t2m_mean.npy / kit_mean.npy; default: looked up in --data and "
        "beside --evaluator)",
    )
    g.add_argument("--eval-std", help="evaluator std (t2m_std.npy / kit_std.npy; as --eval-mean)")
    g.add_argument(
        "--glove",
        help="GloVe folder with our_vab_*.{npy,pkl} (default: DATA/glove or DATA/../glove)",
    )
    g.add_argument(
        "--on-missing",
        choices=("error", "skip"),
        default="error",
        help="a split clip without its files: stop (default) or skip it as the protocol does",
    )
    s = p.add_argument_group("generated motions (one of)")
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--generator",
        metavar="MODULE:NAME",
        help="a callable (captions, lengths) -> motions (B, T, D); MODULE is an importable "
        "module or a .py file; NAME() calls a zero-argument factory once",
    )
    which.add_argument(
        "--motions", metavar="DIR", help="motions saved under the --write-prompts folder"
    )
    which.add_argument(
        "--write-prompts", metavar="DIR", help="write each replication's prompts and stop"
    )
    which.add_argument(
        "--ground-truth",
        action="store_true",
        help="use the ground-truth crops as the generated motions (a pipeline check)",
    )
    s.add_argument("--generator-mean", help="the generator's normalization mean (e.g. Mean.npy)")
    s.add_argument("--generator-std", help="the generator's normalization std (e.g. Std.npy)")
    s.add_argument(
        "--batch-size", type=_common.positive_int, default=32, help="prompts per generator call"
    )
    r = p.add_argument_group("protocol")
    r.add_argument(
        "--replications",
        default="20",
        help="R, or 'auto' (stop when every t half-width is within --tolerance; default 20)",
    )
    r.add_argument(
        "--tolerance",
        help="with --replications auto: a half-width for every metric, or METRIC=T,… "
        "(r_precision, matching_score, fid, diversity, multimodality)",
    )
    r.add_argument("--min-replications", type=int, default=3, help="with auto (default 3)")
    r.add_argument(
        "--max-replications", type=int, default=20, help="with auto: the cap (default 20)"
    )
    r.add_argument(
        "--num-samples", type=_common.positive_int, default=1024, help="prompts per replication"
    )
    r.add_argument(
        "--mm-texts", type=int, default=100, help="MultiModality texts (0: skip; default 100)"
    )
    r.add_argument(
        "--mm-repeats", type=int, default=30, help="generations per MM text (default 30)"
    )
    r.add_argument(
        "--pool", type=_common.positive_int, default=32, help="R-precision pool (default 32)"
    )
    r.add_argument("--diversity-times", type=int, default=300, help="Diversity pairs (default 300)")
    r.add_argument("--mm-times", type=int, default=10, help="MultiModality pairs (default 10)")
    r.add_argument(
        "--prompts",
        choices=("independent", "ground_truth"),
        default="independent",
        help="prompts from a draw of their own (the protocol) or the ground-truth draw's",
    )
    r.add_argument(
        "--pad",
        choices=("zero", "keep"),
        default="zero",
        help="frames past each length: zeroed (default) or kept (MDM's published loop)",
    )
    r.add_argument("--no-real-row", action="store_true", help="skip the real-motion row")
    o = p.add_argument_group("output")
    o.add_argument("--device", type=_common.device_type, default=None, help="evaluator device")
    o.add_argument("--cache-dir", help="cache ground-truth embeddings here")
    o.add_argument("--output", help="also write the JSON result to this file")
    o.add_argument("--no-progress", action="store_true", help="no per-replication progress lines")
    _common.add_seed_flag(p)
    _common.add_json_flag(p)
    p.set_defaults(func=run)


def _find(explicit: str | None, names: list[Path], what: str) -> Path:
    if explicit:
        return Path(explicit)
    for c in names:
        if c.is_file():
            return c
    raise FidevalError(
        f"no {what} found (looked for {[str(c) for c in names]}); pass it explicitly"
    )


def _glove(args: argparse.Namespace) -> Path:
    if args.glove:
        return Path(args.glove)
    data = Path(args.data)
    for c in (data / "glove", data.parent / "glove"):
        if (c / "our_vab_data.npy").is_file():
            return c
    raise FidevalError(
        f"no GloVe folder (our_vab_data.npy) in {data}/glove or {data.parent}/glove; pass --glove"
    )


def _tolerance(text: str | None) -> Any:
    if text is None:
        return None
    if "=" not in text:
        try:
            return float(text)
        except ValueError:
            raise FidevalError(f"--tolerance: {text!r} is not a number or METRIC=T,…") from None
    out = {}
    for part in text.split(","):
        key, _, val = part.partition("=")
        try:
            out[key.strip()] = float(val)
        except ValueError:
            raise FidevalError(f"--tolerance: {part!r} is not METRIC=T") from None
    return out


def load_generator(spec: str) -> Any:
    """``MODULE:NAME`` or ``file.py:NAME`` → the callable (``NAME()`` calls a factory once)."""
    mod_name, sep, attr = spec.rpartition(":")
    if not sep or not mod_name or not attr:
        raise FidevalError(f"--generator {spec!r}: expected MODULE:NAME")
    factory = attr.endswith("()")
    attr = attr[:-2] if factory else attr
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise FidevalError(f"--generator: {path} does not exist")
            sys.path.insert(0, str(path.resolve().parent))
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise FidevalError(f"--generator: cannot import {mod_name}: {exc}") from exc
    if not hasattr(module, attr):
        raise FidevalError(f"--generator: {mod_name} has no {attr}")
    obj = getattr(module, attr)
    if factory:
        obj = obj()
    if not callable(obj):
        raise FidevalError(f"--generator: {spec} is not callable")
    return obj


def run(args: argparse.Namespace) -> int:
    from ..motion import (
        GroundTruthGenerator,
        MotionTextSource,
        T2MEvaluator,
        WordVectorizer,
        evaluate,
    )
    from ..motion.humanml import dataset_spec
    from ..motion.saved import SavedMotions, write_prompts

    spec = dataset_spec(args.dataset)
    data, ev_dir = Path(args.data), Path(args.evaluator).parent
    look = [data, data.parent, ev_dir, ev_dir.parent, ev_dir.parent / "meta"]
    mean = _find(
        args.eval_mean,
        [d / spec.eval_mean_file for d in look],
        f"evaluator mean {spec.eval_mean_file}",
    )
    std = _find(
        args.eval_std, [d / spec.eval_std_file for d in look], f"evaluator std {spec.eval_std_file}"
    )
    source = MotionTextSource(
        data,
        spec.name,
        vectorizer=WordVectorizer.from_dir(_glove(args)),
        mean=mean,
        std=std,
        split=args.split,
        on_missing=args.on_missing,
    )
    auto = args.replications.strip().lower() == "auto"
    if not auto:
        try:
            reps: int | str = int(args.replications)
        except ValueError:
            raise FidevalError(
                f"--replications: {args.replications!r} is not a number or 'auto'"
            ) from None
    else:
        reps = "auto"
    if args.write_prompts:
        n_rep = args.max_replications if auto else int(reps)
        paths = write_prompts(
            source,
            args.write_prompts,
            replications=n_rep,
            seed=args.seed,
            num_samples=args.num_samples,
            pool=args.pool,
            mm_texts=args.mm_texts,
            mm_repeats=args.mm_repeats,
        )
        print(
            f"wrote {len(paths)} replications' prompts under {args.write_prompts}", file=sys.stderr
        )
        if args.json:
            _common.print_json({"prompts": [str(p) for p in paths]})
        return 0
    evaluator = T2MEvaluator.from_checkpoint(args.evaluator, spec.name, device=args.device)
    if args.ground_truth:
        generator: Any = GroundTruthGenerator()
    elif args.motions:
        generator = SavedMotions(args.motions)
    else:
        generator = load_generator(args.generator)
    if args.ground_truth and (args.generator_mean or args.generator_std):
        raise FidevalError(
            "--ground-truth motions are already normalized; drop --generator-mean/std"
        )
    result = evaluate(
        generator,
        source,
        evaluator,
        generator_mean=args.generator_mean,
        generator_std=args.generator_std,
        replications=reps,
        tolerance=_tolerance(args.tolerance),
        min_replications=args.min_replications,
        max_replications=args.max_replications,
        num_samples=args.num_samples,
        mm_texts=args.mm_texts,
        mm_repeats=args.mm_repeats,
        pool=args.pool,
        diversity_times=args.diversity_times,
        mm_times=args.mm_times,
        prompts=args.prompts,
        ground_truth_row=not args.no_real_row,
        pad=args.pad,
        batch_size=args.batch_size,
        seed=args.seed,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
    )
    out = result.to_dict()
    out["skipped_clips"] = dict(source.skipped)
    if args.output:
        from ..io.atomic import atomic_write

        with atomic_write(args.output, "w") as f:
            json.dump(_common._jsonable(out), f, indent=1)
    if args.json:
        _common.print_json(out)
    else:
        print(result.table())
        t = out["timing"]
        print(
            f"{t['seconds_per_replication']:.1f} s per replication; 20 replications would take "
            f"{t['projected_seconds_for_20'] / 60:.1f} min"
        )
    return 0
