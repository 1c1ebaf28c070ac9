"""`fideval demo --quick`: the end-to-end smoke run on the sklearn digits."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")


@pytest.mark.slow
def test_demo_quick(tmp_path, capsys):
    from fideval.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--steps", "300"]) == 0
    printed = capsys.readouterr().out
    assert "step" in printed and "95% interval" in printed
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 75, 150, 225, 300]
    for r in rows:
        assert {"step", "fid", "fid_ci95", "n", "seconds"} <= set(r)
        assert r["n"] == 500 and r["fid_ci95"][0] <= r["fid"] <= r["fid_ci95"][1]
    # Seeded run: training moves the samples towards the data.
    assert rows[-1]["fid"] < 0.7 * rows[0]["fid"]
    pytest.importorskip("matplotlib")
    assert (out / "fid.png").stat().st_size > 1000
