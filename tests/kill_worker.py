"""Fork server for the ``kill -9`` tests (tests/test_kill.py); not a test module.

Importing torch and fideval costs seconds, so this process imports them once and then
forks one writer per command; the test kills the writer with SIGKILL at a random
moment and inspects what it left on disk. Protocol, one line each way:

    test -> server: ``cli OUT FIRST FEATS...``  fork a child that runs
                    ``fideval stats FEATS[i % K] -o OUT`` for i = FIRST, FIRST+1, ...
                    until killed (the CLI's real code path, in process)
    test -> server: ``ref CACHE_DIR``           fork a child that computes the reference
                    statistics of :func:`reference_images` with a checkpoint after every
                    batch, then exits 0
    server -> test: ``pid PID``
    test -> server: ``reap``                    server -> test: ``status CODE`` (the
                    child's exit status; -9 when it was killed)
    test -> server: ``quit``

The parent never runs a torch operation, so the children start from a clean thread
state (forking after an OpenMP pool exists can deadlock); each child uses one thread.
"""

from __future__ import annotations

import os
import sys
import traceback

import torch
from torch import nn

import fideval.cli
from fideval.train.reference import compute_reference_stats

#: The reference dataset of the ``ref`` task: size, batch size.
REF_IMAGES = 4000
REF_BATCH = 10


def reference_images() -> torch.Tensor:
    """A fixed image tensor (N, 1, 8, 8) in [0, 1] (same bits in every process)."""
    g = torch.Generator().manual_seed(7)
    return torch.rand(REF_IMAGES, 1, 8, 8, generator=g, dtype=torch.float64).float()


class ProjectionExtractor(nn.Module):
    """A deterministic extractor: images → tanh of a fixed projection (d = 96)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.register_buffer("w", torch.randn(64, 96, generator=g, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x.flatten(1).double() @ self.w)

    def provenance(self) -> dict:
        return {"extractor": "projection", "weights_sha256": "seed3", "dims": 96, "profile": "u"}


def run_reference(cache_dir: str, batch_size: int = REF_BATCH) -> None:
    """The reference statistics, cached in ``cache_dir``, checkpointed after every batch."""
    compute_reference_stats(
        reference_images(),
        ProjectionExtractor(),
        batch_size=batch_size,
        cache_dir=cache_dir,
        checkpoint_every=1,
    )


def _cli_loop(out: str, first: int, feats: list[str]) -> None:
    i = first
    while True:
        rc = fideval.cli.main(["stats", feats[i % len(feats)], "-o", out, "--json"])
        if rc != 0:
            raise SystemExit(f"fideval stats exited {rc}")
        i += 1


def _child(words: list[str]) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    torch.set_num_threads(1)
    code = 0
    try:
        if words[0] == "cli":
            _cli_loop(words[1], int(words[2]), words[3:])
        elif words[0] == "ref":
            run_reference(words[1])
    except BaseException:  # report and exit non-zero; never return into the server loop
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    fideval.cli.build_parser()  # import every subcommand once, before forking
    child = None
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] == "reap":
            assert child is not None
            _, status = os.waitpid(child, 0)
            child = None
            print(f"status {os.waitstatus_to_exitcode(status)}", flush=True)
            continue
        pid = os.fork()
        if pid == 0:
            _child(words)
        child = pid
        print(f"pid {pid}", flush=True)


if __name__ == "__main__":
    main()
