"""``kill -9`` at random moments: a statistics file is always the old one or the new one.

A fork server (tests/kill_worker.py) imports fideval once and forks writers: the CLI
writing a ``.npz`` over and over, and a reference-statistics run checkpointing after
every batch. Each writer is killed with SIGKILL after a seeded random delay; then the
files on disk are checked: the target loads and equals one of the expected contents,
temporary files never take a real file's name, orphaned temporary files are removed
by the next write, and a resumed reference run counts every image exactly once.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fideval.io.statsfile import load_stats

WORKER = Path(__file__).with_name("kill_worker.py")
KILLS = 30
TEMP = re.compile(r"^\..+\.tmp$")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and SIGKILL"),
]


class Server:
    """The fork server: one line out, one line back."""

    def __init__(self, log: Path) -> None:
        self.log = open(log, "w")  # closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, f"the fork server died; see {self.log.name}"
        return answer.split()[1]

    def start(self, line: str) -> int:
        return int(self.ask(line))

    def reap(self) -> int:
        return int(self.ask("reap"))

    def run_killed(self, line: str, delay: float) -> int:
        """Start a child, SIGKILL it after ``delay`` seconds (unless done), reap it."""
        pid = self.start(line)
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # pragma: no cover - a zombie still takes signals
            pass
        return self.reap()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("kill") / "server.log")
    yield s
    s.close()


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _leftovers(folder: Path, real: set[str]) -> list[str]:
    """Files in ``folder`` that are not real outputs; each must be a hidden temp file."""
    others = sorted(p.name for p in folder.iterdir() if p.name not in real)
    assert all(TEMP.match(name) for name in others), others
    return others


def test_cli_stats_file_survives_sigkill(tmp_path, server):
    rng = np.random.default_rng(2024)
    feats, expected = [], {}
    for j in range(6):  # six versions of the output, told apart by N
        x = rng.standard_normal((300 + 17 * j, 192)).astype(np.float32) * (1 + j)
        path = tmp_path / f"feats{j}.npy"
        np.save(path, x)
        feats.append(str(path))
        x64 = x.astype(np.float64)
        expected[x.shape[0]] = (str(path), x64.mean(0), np.cov(x64, rowvar=False))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "stats.npz"
    delays = random.Random(11)
    first, seen, orphans = 0, set(), 0
    for _ in range(KILLS):
        status = server.run_killed(
            f"cli {out} {first} {' '.join(feats)}", delays.uniform(0.02, 0.4)
        )
        assert status == -signal.SIGKILL  # the loop never ends on its own
        first += 7
        orphans = max(orphans, len(_leftovers(out_dir, {"stats.npz"})))
        if not out.exists():  # killed before its first write ever finished
            assert not seen
            continue
        rec = load_stats(out)  # loads: never a torn file
        source, mu, sigma = expected[rec.n]
        assert rec.meta["source"] == source
        assert _rel(rec.mu, mu) < 1e-12 and _rel(rec.sigma, sigma) < 1e-12
        seen.add(rec.n)
    assert seen, "no write ever completed: the delays are too short for this machine"
    # One clean write leaves exactly the real file: orphans of killed writers are removed.
    from fideval.cli import main

    assert main(["stats", feats[0], "-o", str(out)]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["stats.npz"]
    assert load_stats(out).n == 300
    print(f"{KILLS} kills; versions seen {sorted(seen)}; at most {orphans} orphaned temp files")


def test_reference_checkpoints_survive_sigkill(tmp_path, server):
    clean = tmp_path / "clean"
    assert server.start(f"ref {clean}") > 0 and server.reap() == 0
    (clean_file,) = clean.glob("ref-*.npz")
    truth = load_stats(clean_file)
    cache = tmp_path / "cache"
    delays = random.Random(5)
    consumed_seen, finished_at = [], None
    from kill_worker import REF_BATCH, REF_IMAGES

    for k in range(KILLS):
        status = server.run_killed(f"ref {cache}", delays.uniform(0.02, 0.2))
        assert status in (0, -signal.SIGKILL)
        if not cache.exists():
            continue
        partials = sorted(cache.glob("*.partial.npz"))
        finals = [p for p in cache.glob("ref-*.npz") if not p.name.endswith(".partial.npz")]
        assert len(partials) <= 1 and len(finals) <= 1
        _leftovers(cache, {p.name for p in partials + finals})
        for p in partials:  # a checkpoint is whole, and its count is what it consumed
            with np.load(p, allow_pickle=False) as data:
                consumed = int(data["consumed"])
                assert int(data["state_n"]) == consumed and consumed % REF_BATCH == 0
                assert json.loads(str(data["meta"]))["cache_key"]["n"] == REF_IMAGES
            consumed_seen.append(consumed)
        if finals:
            finished_at = finished_at if finished_at is not None else k
            rec = load_stats(finals[0])
            assert rec.n == REF_IMAGES
            assert _rel(rec.mu, truth.mu) < 1e-12 and _rel(rec.sigma, truth.sigma) < 1e-12
    # Finish the run, uninterrupted, from wherever the kills left it.
    assert server.start(f"ref {cache}") > 0 and server.reap() == 0
    (final,) = cache.glob("ref-*.npz")
    assert sorted(p.name for p in cache.iterdir()) == [final.name]  # no partial, no temp
    rec = load_stats(final)
    assert rec.n == REF_IMAGES  # every image counted exactly once
    assert _rel(rec.mu, truth.mu) < 1e-12 and _rel(rec.sigma, truth.sigma) < 1e-12
    assert rec.meta["cache_key"] == truth.meta["cache_key"]
    assert consumed_seen, "no checkpoint survived a kill: the delays are too short"
    print(
        f"{KILLS} kills; {len(set(consumed_seen))} checkpoints seen, last at {max(consumed_seen)} images; cache done after kill {finished_at}"
    )
