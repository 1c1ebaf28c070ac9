"""The flow shows in the imports: no module imports a later stage, not even lazily.

Stages, in order (a module may import its own stage and earlier ones):
base (errors, _arrays, _ranks, _tdist, io.atomic/weights/provenance, readers) → data →
features → stats → frechet → io.statsfile / distributed → streaming / pipeline →
metrics / estimate → motion → api → train → cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fideval

ROOT = Path(fideval.__file__).parent
STAGES = [
    [
        "errors",
        "_version",
        "_arrays",
        "_ranks",
        "_tdist",
        "io.atomic",
        "io.weights",
        "io.provenance",
        "io.edm2_pickle",
        "io.adm_npz",
        "io",
        "_text",
    ],
    ["data"],
    ["features"],
    ["stats"],
    ["frechet"],
    ["io.statsfile", "distributed"],
    ["streaming", "pipeline", "featurecache"],
    ["metrics", "estimate"],
    ["motion"],
    ["api", "suite"],
    ["train", "plot"],
    ["cli", "__main__"],
]


def stage(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for i, prefixes in enumerate(STAGES):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    return None if best is None else best[0]


def imports(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """Every fideval module imported by ``path`` (top level and inside functions)."""
    package = list(path.relative_to(root).with_suffix("").parts)[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            if node.module:
                out.append((".".join([*base, node.module]), node.lineno))
            else:
                out += [(".".join([*base, a.name]), node.lineno) for a in node.names]
        elif node.module and node.module.startswith("fideval."):
            out.append((node.module.removeprefix("fideval."), node.lineno))
    return out


def test_every_module_has_a_stage():
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix("__init__")
        name = name.rstrip(".")
        if name:
            assert stage(name) is not None, f"{name} is in no stage"


def test_no_module_imports_a_later_stage():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix("__init__")
        name = name.rstrip(".")
        if not name:
            continue  # fideval/__init__ re-exports the public names of every stage
        own = stage(name)
        for target, line in imports(path):
            theirs = stage(target)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{name}:{line} imports {target}")
    assert not upward, "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The checker itself: a data-stage file importing features, lazily, is reported."""
    (tmp_path / "data").mkdir()
    bad = tmp_path / "data" / "probe.py"
    bad.write_text("def f():\n    from ..features import base\n    from . import layout\n")
    assert imports(bad, tmp_path) == [("features", 2), ("data.layout", 3)]
    assert stage("data.probe") < stage("features") and stage("data.layout") == stage("data")
