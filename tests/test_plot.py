"""``fideval plot``: FID against step from an evaluator log."""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("matplotlib")

from fideval.cli import main
from fideval.errors import FidevalError
from fideval.plot import figure, plot_log, use_log_scale

PNG = b"\x89PNG\r\n\x1a\n"


def _records(fids: list[float], paired: bool = True) -> list[dict]:
    out = []
    for i, f in enumerate(fids):
        r = {"step": 1000 * i, "fid": f, "fid_ci95": [0.9 * f, 1.1 * f]}
        if paired and i:
            d = f - fids[i - 1]
            r["vs_previous"] = {"step": 1000 * (i - 1), "difference": d, "ci95": [d - 1, d + 1]}
        out.append(r)
    return out


def test_log_scale_rule():
    assert use_log_scale([300.0, 20.0])
    assert not use_log_scale([30.0, 20.0])
    assert not use_log_scale([300.0, 20.0, -1.0])
    assert not use_log_scale([])


def test_figure_panels_scale_and_best_marker():
    fig = figure(_records([314.0, 123.0, 60.0, 24.0, 25.0]))
    top, bottom = fig.axes
    assert top.get_yscale() == "log"  # 314 / 24 > 10
    labels = top.get_legend_handles_labels()[1]
    assert "best: step 3000" in labels
    assert bottom.get_ylabel() == "FID − previous"
    assert bottom.get_yscale() == "symlog"  # differences from 191 down to 1
    flat = figure(_records([30.0, 25.0, 24.0], paired=False))
    assert len(flat.axes) == 1 and flat.axes[0].get_yscale() == "linear"
    marked = _records([30.0, 25.0, 24.0])
    marked[-1]["best_step"] = 1000  # the evaluator's own choice wins over the lowest value
    assert "best: step 1000" in figure(marked).axes[0].get_legend_handles_labels()[1]


def test_plot_log_writes_a_png(tmp_path):
    out = plot_log(_records([50.0, 40.0]), tmp_path / "fid.png")
    assert out.read_bytes()[:8] == PNG
    with pytest.raises(FidevalError, match="no records"):
        plot_log([], tmp_path / "x.png")
    with pytest.raises(FidevalError, match="record 0 has no 'step'/'fid'"):
        plot_log([{"fid": 1.0}], tmp_path / "x.png")


def test_cli_plot(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in _records([50.0, 40.0, 41.0])))
    assert main(["plot", str(log), "-o", str(tmp_path / "out.png")]) == 0
    assert (tmp_path / "out.png").read_bytes()[:8] == PNG
    assert main(["plot", str(log)]) == 0
    assert (tmp_path / "fid.png").exists()
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fideval plot: error: {tmp_path / 'missing.jsonl'}: no such file"]


def test_cli_plot_without_matplotlib(tmp_path, capsys, monkeypatch):
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(_records([50.0])[0]) + "\n")
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    assert main(["plot", str(log)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fideval plot: error: plotting needs matplotlib: pip install 'fideval[plot]'"]
