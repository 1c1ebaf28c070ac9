"""FID against training step from an evaluator log (``FIDEvaluator(log_path=…)``).

:func:`plot_log` draws, from the JSONL records (:func:`fideval.train.read_jsonl`):

* top: each evaluation's ``fid`` with its 95% interval ``fid_ci95`` (error bars), the
  best checkpoint marked (the last record's ``best_step``, else the lowest ``fid``); the
  y axis is logarithmic when the values span more than a factor of 10;
* bottom, when the records carry paired comparisons (``FIDEvaluator(paired=True)``):
  ``vs_previous.difference`` = FID(this step) − FID(previous evaluation) with its 95%
  interval, filled where the interval excludes 0; a symmetric-log axis (linear within
  the median half-width) when the differences' sizes span more than a factor of 10.

matplotlib is imported only here, lazily (``pip install 'fideval[plot]'``); without it,
:func:`plot_log` raises a :class:`~fideval.errors.FidevalError` saying so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FidevalError

__all__ = ["LOG_SPAN", "figure", "plot_log", "use_log_scale"]

#: A logarithmic y axis when max/min of the plotted values exceeds this.
LOG_SPAN = 10.0
MISSING_MATPLOTLIB = "plotting needs matplotlib: pip install 'fideval[plot]'"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise FidevalError(MISSING_MATPLOTLIB) from exc
    return plt


def use_log_scale(values: Sequence[float]) -> bool:
    """True when all values are > 0 and max/min > :data:`LOG_SPAN`."""
    vals = [float(v) for v in values]
    if not vals or min(vals) <= 0:
        return False
    return max(vals) / min(vals) > LOG_SPAN


def _best_step(records: Sequence[dict[str, Any]]) -> int:
    marked = records[-1].get("best_step")
    if marked is not None:
        return int(marked)
    return int(min(records, key=lambda r: float(r["fid"]))["step"])


def plot_log(
    records: Sequence[dict[str, Any]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    ylabel: str = "FID",
) -> Path:
    """Draw the records to ``path`` (PNG, PDF or SVG by suffix; written atomically);
    returns the path.

    Raises:
        FidevalError: no records, a record without ``step``/``fid``, or no matplotlib.
    """
    plt = _pyplot()
    fig = figure(records, title=title, ylabel=ylabel)
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    try:
        fig.savefig(tmp)
    finally:
        plt.close(fig)
    os.replace(tmp, out)
    return out


def figure(
    records: Sequence[dict[str, Any]], *, title: str | None = None, ylabel: str = "FID"
) -> Any:
    """The matplotlib ``Figure`` :func:`plot_log` saves (module docstring)."""
    if not records:
        raise FidevalError("nothing to plot: the log holds no records")
    for i, r in enumerate(records):
        if "step" not in r or "fid" not in r:
            raise FidevalError(f"record {i} has no 'step'/'fid': not a FIDEvaluator log")
    plt = _pyplot()
    recs = sorted(records, key=lambda r: int(r["step"]))
    steps = [int(r["step"]) for r in recs]
    fid = [float(r["fid"]) for r in recs]
    lo = [float(r.get("fid_ci95", (v, v))[0]) for r, v in zip(recs, fid, strict=True)]
    hi = [float(r.get("fid_ci95", (v, v))[1]) for r, v in zip(recs, fid, strict=True)]
    diffs = [r for r in recs if r.get("vs_previous")]
    fig, axes = plt.subplots(
        2 if diffs else 1,
        1,
        figsize=(7, 6.5 if diffs else 4.2),
        dpi=110,
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 2]} if diffs else None,
    )
    ax = axes[0][0]
    err = [[max(f - a, 0.0) for f, a in zip(fid, lo, strict=True)]]
    err.append([max(b - f, 0.0) for f, b in zip(fid, hi, strict=True)])
    ax.errorbar(steps, fid, yerr=err, marker="o", ms=4, capsize=3, label="FID, 95% interval")
    best = _best_step(recs)
    at = [i for i, s in enumerate(steps) if s == best]
    if at:
        i = at[-1]
        star = {"marker": "*", "ms": 16, "color": "tab:red", "ls": "none"}
        ax.plot([steps[i]], [fid[i]], label=f"best: step {best}", **star)
    if use_log_scale(fid):
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    if title:
        ax.set_title(title)
    if diffs:
        bx = axes[1][0]
        for r in diffs:
            c = r["vs_previous"]
            d = float(c["difference"])
            a, b = (float(v) for v in c["ci95"])
            significant = a > 0 or b < 0
            color = "tab:green" if b < 0 else ("tab:red" if a > 0 else "tab:gray")
            style = {"marker": "o", "ms": 5, "capsize": 3, "color": color}
            style["mfc"] = color if significant else "white"
            bx.errorbar([int(r["step"])], [d], yerr=[[d - a], [b - d]], **style)
        mags = [abs(float(r["vs_previous"]["difference"])) for r in diffs]
        if use_log_scale([m for m in mags if m > 0]):
            # Early steps dwarf late ones: linear within the typical half-width, log beyond.
            halves = [0.5 * abs(b - a) for a, b in (r["vs_previous"]["ci95"] for r in diffs)]
            bx.set_yscale("symlog", linthresh=max(float(np.median(halves)), 1e-12))
        bx.axhline(0.0, color="black", lw=0.8)
        bx.set_ylabel("FID − previous")
        bx.set_title(
            "paired difference from the previous evaluation, 95% interval "
            "(green: better, red: worse, open: not distinguishable)",
            fontsize=8,
        )
        bx.grid(alpha=0.3)
        bx.set_xlabel("training step")
    else:
        ax.set_xlabel("training step")
    fig.tight_layout()
    return fig
