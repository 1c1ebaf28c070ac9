"""fideval.motion.evaluate and ``fideval motion-eval`` on a synthetic KIT-ML folder, random weights."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch

import fideval.motion as fm
from fideval.cli import main
from fideval.errors import FidevalError
from fideval.metrics.motion import text_motion_matching
from fideval.motion.evaluate import replication_streams
from fideval.motion.saved import SavedMotions, replication_dir, write_prompts
from test_motion_humanml import open_source, write_dataset

DS = "kit"
D = 251
# Small protocol settings for a 36-clip folder: one pool of 32 per draw.
SMALL = {"num_samples": 32, "mm_texts": 4, "mm_repeats": 3, "mm_times": 2, "diversity_times": 8}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small GRU batches: one thread is faster than several on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("kit")
    write_dataset(root, DS, clips=34, max_len=44, special=False)
    ckpt = root / "finest.tar"
    torch.save(fm.random_checkpoint(DS, seed=1), ckpt)
    source = open_source(root, DS)
    evaluator = fm.T2MEvaluator.from_checkpoint(ckpt, DS)
    gmean = np.random.default_rng(2).standard_normal(D)
    gstd = np.random.default_rng(3).uniform(0.5, 2.0, D)
    np.save(root / "gen_mean.npy", gmean)
    np.save(root / "gen_std.npy", gstd)
    return {
        "root": root,
        "ckpt": ckpt,
        "source": source,
        "ev": evaluator,
        "gmean": gmean,
        "gstd": gstd,
    }


class Synthetic:
    """A deterministic 'model': Gaussian motions per (caption, how often it was asked)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.seen: dict[str, int] = {}
        self.scale = scale

    def __call__(self, texts, lengths):
        out = np.zeros((len(texts), int(max(lengths)) + 3, D), np.float32)
        for i, t in enumerate(texts):
            k = self.seen.get(t, 0)
            self.seen[t] = k + 1
            rng = np.random.default_rng(zlib.crc32(t.encode()) + 1000 * k)
            out[i] = rng.standard_normal(out.shape[1:]) * self.scale
        return torch.from_numpy(out)


def run_cli(capsys, *args):
    code = main(["motion-eval", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def base_args(env):
    root = env["root"]
    return [
        "--dataset", DS, "--data", str(root), "--evaluator", str(env["ckpt"]),
        "--eval-mean", str(root / "eval_mean.npy"), "--eval-std", str(root / "eval_std.npy"),
        "--num-samples", "32", "--mm-texts", "4", "--mm-repeats", "3", "--mm-times", "2",
        "--diversity-times", "8",
    ]  # fmt: skip


def test_cli_ground_truth_against_itself(env, capsys):
    code, out, _ = run_cli(
        capsys, *base_args(env), "--ground-truth", "--prompts", "ground_truth",
        "--replications", "2", "--seed", "4", "--json", "--no-progress",
    )  # fmt: skip
    assert code == 0
    res = json.loads(out)
    gen = res["per_replication"]
    assert res["replications"] == 2 and len(gen) == 2
    for r, rep in enumerate(gen):
        assert abs(rep["generated"]["fid"]) < 1e-6
        assert rep["generated"]["multimodality"] < 1e-4  # the same motion each time
        # R-precision and Matching Score equal those of the same embeddings computed directly.
        batch = env["source"].draw(
            np.random.default_rng(replication_streams(4, r)[0]), multiple_of=32
        )
        ev = env["ev"]
        t = ev.text_embeddings(batch.word_embs, batch.pos_onehot, batch.cap_lens).double()
        m = ev.motion_embeddings(batch.motions, batch.m_lens).double()
        direct = text_motion_matching(t, m, pool=32)
        np.testing.assert_allclose(rep["generated"]["r_precision"], direct.r_precision, atol=1e-12)
        assert rep["generated"]["matching_score"] == pytest.approx(direct.matching_score, abs=1e-5)
    vals = np.array([rep["generated"]["matching_score"] for rep in gen])
    summ = res["intervals"]["matching_score"]
    assert summ["mean"] == pytest.approx(vals.mean())
    assert summ["std"] == pytest.approx(vals.std(ddof=1))
    assert summ["protocol_ci95_halfwidth"] < summ["ci_halfwidth"]  # the protocol's is narrower
    assert "ground_truth" in res and res["settings"]["pool"] == 32


def test_cli_table_and_generator(env, capsys, tmp_path):
    gen_file = tmp_path / "my_model.py"
    gen_file.write_text(
        "import numpy as np\n"
        "def make():\n"
        "    rng = np.random.default_rng(0)\n"
        f"    return lambda texts, lengths: rng.standard_normal((len(texts), max(lengths), {D}))\n"
    )
    root = env["root"]
    out_json = tmp_path / "res.json"
    code, out, err = run_cli(
        capsys, *base_args(env), "--generator", f"{gen_file}:make()",
        "--generator-mean", str(root / "gen_mean.npy"), "--generator-std", str(root / "gen_std.npy"),
        "--replications", "2", "--output", str(out_json), "--no-real-row",
    )  # fmt: skip
    assert code == 0, err
    assert "R@1" in out and "FID" in out and "Generated" in out and "Real motion" not in out
    assert "replication 2/2" in err and "projected" in err
    assert "20 replications would take" in out
    res = json.loads(out_json.read_text())
    assert res["replications"] == 2 and res["provenance"]["extractor"] == "t2m-evaluator-kit"


def test_cli_errors(env, capsys, tmp_path):
    code, _, err = run_cli(capsys, *base_args(env), "--generator", "nosuchmodule_xyz:f")
    assert code == 2 and "cannot import nosuchmodule_xyz" in err
    bad = tmp_path / "bad.tar"
    ck = fm.random_checkpoint(DS)
    del ck["motion_encoder"]["hidden"]
    torch.save(ck, bad)
    args = base_args(env)
    args[args.index(str(env["ckpt"]))] = str(bad)
    code, _, err = run_cli(capsys, *args, "--ground-truth")
    assert code == 2 and "missing key motion_encoder.hidden" in err
    code, _, err = run_cli(capsys, *base_args(env), "--ground-truth", "--replications", "auto")
    assert code == 2 and "needs a tolerance" in err


def test_library_generator_normalization(env):
    """A generator in its own normalization scores as the same motions in feature units."""
    src, ev = env["source"], env["ev"]
    gmean, gstd = env["gmean"], env["gstd"]

    class InNorm(Synthetic):
        def __call__(self, texts, lengths):
            return (super().__call__(texts, lengths).numpy() - gmean) / gstd

    kw = {**SMALL, "replications": 1, "seed": 7, "ground_truth_row": False}
    a = fm.evaluate(InNorm(), src, ev, generator_mean=gmean, generator_std=gstd, **kw)
    b = fm.evaluate(Synthetic(), src, ev, **kw)
    for key in ("matching_score", "fid", "diversity", "multimodality"):
        assert a.per_replication[0]["generated"][key] == pytest.approx(
            b.per_replication[0]["generated"][key], rel=1e-4
        )


def test_auto_stops_and_prefix(env):
    src, ev = env["source"], env["ev"]
    kw = {**SMALL, "seed": 3, "ground_truth_row": False, "mm_texts": 0}
    loose = fm.evaluate(
        Synthetic(), src, ev, replications="auto", tolerance=1e9, min_replications=2, **kw
    )
    assert loose.replications == 2 and loose.stopped.startswith("tolerance reached")
    tight = fm.evaluate(
        Synthetic(), src, ev, replications="auto", tolerance={"fid": 1e-9}, min_replications=2,
        max_replications=3, **kw,
    )  # fmt: skip
    assert tight.replications == 3 and tight.stopped.startswith("cap of 3")
    # Replication r uses the same streams whatever the count or the rule: runs share a prefix.
    for a, b in zip(loose.per_replication, tight.per_replication[:2], strict=True):
        assert a["generated"] == b["generated"]
    assert tight.per_replication[2]["generated"] != tight.per_replication[1]["generated"]
    half = np.atleast_1d(tight.summary["fid"].ci_halfwidth)
    assert np.all(half > 1e-9)
    with pytest.raises(FidevalError, match="unknown metrics"):
        fm.evaluate(Synthetic(), src, ev, replications="auto", tolerance={"FID": 1.0}, **kw)


def test_saved_motions_equal_the_callable(env, tmp_path):
    src, ev = env["source"], env["ev"]
    kw = {"num_samples": 32, "mm_texts": 4, "mm_repeats": 3, "pool": 32}
    write_prompts(src, tmp_path, replications=2, seed=5, **kw)
    model = Synthetic()  # one model for the run, as evaluate() calls it
    for r in range(2):
        doc = json.loads((replication_dir(tmp_path, r) / "prompts.json").read_text())
        assert len(doc["captions"]) == 32 and all(n % 4 == 0 for n in doc["lengths"])
        lengths = np.array(doc["lengths"])
        main_rows = np.concatenate(
            [
                model(doc["captions"][i : i + 32], lengths[i : i + 32]).numpy()
                for i in range(0, 32, 32)
            ]
        )
        mm = np.stack([model(doc["captions"][:4], lengths[:4]).numpy() for _ in range(2)], axis=1)
        np.save(replication_dir(tmp_path, r) / "motions.npy", main_rows)
        np.save(replication_dir(tmp_path, r) / "mm_motions.npy", mm)
    saved = SavedMotions(tmp_path)
    assert saved.available() == 2
    common = {**SMALL, "replications": 2, "seed": 5, "ground_truth_row": False}
    a = fm.evaluate(saved, src, ev, **common)
    b = fm.evaluate(Synthetic(), src, ev, **common)
    for x, y in zip(a.per_replication, b.per_replication, strict=True):
        for key in ("r_precision", "matching_score", "fid", "diversity", "multimodality"):
            np.testing.assert_allclose(x["generated"][key], y["generated"][key], rtol=1e-5)
    with pytest.raises(FidevalError, match="prompts differ"):
        fm.evaluate(SavedMotions(tmp_path), src, ev, **{**common, "seed": 6})


def test_cache_reuses_ground_truth(env, tmp_path):
    src, ev = env["source"], env["ev"]
    kw = {**SMALL, "replications": 1, "seed": 2, "cache_dir": tmp_path / "cache"}
    a = fm.evaluate(Synthetic(), src, ev, **kw)
    files = sorted((tmp_path / "cache").glob("t2m-gt-*.npz"))
    assert len(files) == 2  # the reference draw and the real-motion row
    b = fm.evaluate(Synthetic(), src, ev, **kw)
    assert a.per_replication[0]["generated"] == b.per_replication[0]["generated"]
    assert a.per_replication[0]["ground_truth"] == b.per_replication[0]["ground_truth"]
    other = fm.T2MEvaluator.from_checkpoint(fm.random_checkpoint(DS, seed=9), DS)
    fm.evaluate(Synthetic(), src, other, **kw)
    assert len(list((tmp_path / "cache").glob("t2m-gt-*.npz"))) == 4  # a new key


def test_bad_generated_motions_named(env):
    src, ev = env["source"], env["ev"]
    kw = {**SMALL, "replications": 1, "ground_truth_row": False}
    with pytest.raises(FidevalError, match=r"shape \(32, 196, 263\) \(the humanml width\)"):
        fm.evaluate(lambda t, n: np.zeros((len(t), 196, 263)), src, ev, **kw)
    with pytest.raises(FidevalError, match="10 frames returned, but lengths up to"):
        fm.evaluate(lambda t, n: np.zeros((len(t), 10, D)), src, ev, **kw)
    with pytest.raises(FidevalError, match="returned shape"):
        fm.evaluate(lambda t, n: np.zeros((3, 196, D)), src, ev, **kw)
    with pytest.raises(FidevalError, match="the evaluator is the humanml one"):
        fm.evaluate(
            Synthetic(), src, fm.T2MEvaluator.from_checkpoint(fm.random_checkpoint("humanml")), **kw
        )
