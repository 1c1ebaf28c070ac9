"""A synthetic HumanML3D / KIT-ML folder read back with the protocol's clips, crops and draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fideval.errors import FidevalError
from fideval.motion import MotionTextSource, WordVectorizer, load_mean_std, to_evaluator_space
from fideval.motion.humanml import DATASETS, draw_crop, protocol_length
from test_motion_vectorizer import write_glove

WORDS = ["unk", "sos", "eos", "a", "person", "walk", "left", "then", "sit", "slowly", "turn"]
CAPTIONS = [
    "a person walks left#a/DET person/NOUN walk/VERB left/ADV",
    "then sits slowly#then/ADV sit/VERB slowly/ADV",
    "someone turns#someone/PRON turn/VERB",
]


def write_dataset(
    root: Path,
    dataset: str = "humanml",
    *,
    clips: int = 40,
    seed: int = 0,
    max_len: int = 200,
    special: bool = True,
) -> dict[str, np.ndarray]:
    """A folder in HumanML3D's layout; returns the raw motions by name.

    With ``special``, clip 0 is too short, clip 1 too long, clip 2 has a
    whole-motion caption and a 3 s segment, clip 3 only segments; the others
    (all clips without ``special``) have lengths in [min_length, max_len) and
    1-3 whole-motion captions.
    """
    rng = np.random.default_rng(seed)
    spec = DATASETS[dataset]
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    motions = {}
    names = []
    fixed = {0: spec.min_length - 1, 1: 200, 2: 190, 3: 180} if special else {}
    for i in range(clips):
        name = f"{i:06d}"
        n = fixed.get(i, int(rng.integers(spec.min_length, max_len)))
        m = (rng.standard_normal((n, spec.dim_pose)) * 2 + 1).astype(np.float32)
        np.save(root / "new_joint_vecs" / f"{name}.npy", m)
        motions[name] = m
        if i == 2 and special:
            lines = [CAPTIONS[0] + "#0.0#0.0", CAPTIONS[1] + "#1.0#4.0"]
        elif i == 3 and special:
            lines = [CAPTIONS[1] + "#0.5#3.5", CAPTIONS[2] + "#2.0#2.5"]  # the second: 10 frames
        else:
            k = int(rng.integers(1, 4))
            lines = [c + ("#nan#nan" if j == 1 else "#0.0#0.0") for j, c in enumerate(CAPTIONS[:k])]
        (root / "texts" / f"{name}.txt").write_text("\n".join(lines) + "\n")
        names.append(name)
    (root / "test.txt").write_text("\n".join(names) + "\n")
    write_glove(root / "glove", WORDS, rng)
    mean = rng.standard_normal(spec.dim_pose)
    std = rng.uniform(0.5, 2.0, spec.dim_pose)
    np.save(root / "eval_mean.npy", mean)
    np.save(root / "eval_std.npy", std)
    return motions


def open_source(root: Path, dataset: str = "humanml", **kw) -> MotionTextSource:
    return MotionTextSource(
        root,
        dataset,
        vectorizer=root / "glove",
        mean=root / "eval_mean.npy",
        std=root / "eval_std.npy",
        **kw,
    )


@pytest.fixture(scope="module", params=["humanml", "kit"])
def folder(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    motions = write_dataset(root, request.param)
    return request.param, root, motions, open_source(root, request.param)


def test_clips_follow_the_length_rules(folder):
    ds, _, motions, src = folder
    names = {c.name: c for c in src.clips}
    assert "000000" not in names and "000001" not in names  # too short, 200 frames
    assert src.skipped["shorter than min_length"] >= 1 and src.skipped["200+ frames"] == 1
    # Clip 2: the whole motion with its one whole caption, plus the 1-4 s segment.
    assert names["000002"].length == 190 and len(names["000002"].captions) == 1
    np.testing.assert_array_equal(names["000002#1"].motion, motions["000002"][20:80])
    # Clip 3: only its 0.5-3.5 s segment (the 0.5 s one is under the minimum); no whole clip.
    assert "000003" not in names and "000003#0" in names and "000003#1" not in names
    np.testing.assert_array_equal(names["000003#0"].motion, motions["000003"][10:70])
    spec = DATASETS[ds]
    assert all(spec.min_length <= c.length < 200 for c in src.clips)
    assert all(c.motion.shape[1] == spec.dim_pose for c in src.clips)
    assert len(src) == len(src.clips) == len(names)


def test_draw_matches_the_protocol(folder):
    ds, _, _, src = folder
    spec = DATASETS[ds]
    batch = src.draw(np.random.default_rng(5))
    assert len(batch) == len(src)
    assert sorted(batch.names) == sorted(c.name for c in src.clips)  # a permutation
    assert (
        batch.motions.shape == (len(src), 196, spec.dim_pose) and batch.motions.dtype == np.float32
    )
    assert batch.word_embs.shape == (len(src), 22, 300) and batch.pos_onehot.shape == (
        len(src),
        22,
        15,
    )
    clips = {c.name: c for c in src.clips}
    vec = src.vectorizer
    for i, name in enumerate(batch.names):
        clip, n = clips[name], int(batch.m_lens[i])
        assert n % 4 == 0 and n in (clip.length // 4 * 4, clip.length // 4 * 4 - 4)
        assert not batch.motions[i, n:].any()
        # The crop is a window of the clip, normalized with the evaluator's mean and std.
        raw = batch.motions[i, :n].astype(np.float64) * src.std + src.mean
        starts = [
            s
            for s in range(clip.length - n + 1)
            if np.allclose(clip.motion[s : s + n], raw, atol=1e-4)
        ]
        assert len(starts) == 1
        cap = [c for c in clip.captions if c.text == batch.captions[i]]
        assert cap and tuple(batch.tokens[i]) == cap[0].tokens
        w, p, length = vec.sentence(batch.tokens[i])
        np.testing.assert_array_equal(batch.word_embs[i], w)
        np.testing.assert_array_equal(batch.pos_onehot[i], p)
        assert batch.cap_lens[i] == length == min(len(batch.tokens[i]), 20) + 2


def test_draws_are_seeded(folder):
    _, _, _, src = folder
    a, b = src.draw(np.random.default_rng(9)), src.draw(np.random.default_rng(9))
    c = src.draw(np.random.default_rng(10))
    assert a.names == b.names and np.array_equal(a.motions, b.motions) and a.captions == b.captions
    assert a.names != c.names
    part = src.draw(np.random.default_rng(9), n=len(src) - 1, multiple_of=4)
    assert len(part) == (len(src) - 1) // 4 * 4
    with pytest.raises(FidevalError, match="asked for"):
        src.draw(np.random.default_rng(0), n=len(src) + 1)


def test_crop_coin_and_start():
    rng = np.random.default_rng(0)
    draws = [draw_crop(99, rng) for _ in range(3000)]
    lengths = np.array([d[1] for d in draws])
    assert set(lengths.tolist()) == {96, 92}
    assert abs(np.mean(lengths == 92) - 1 / 3) < 0.04  # binomial sd ≈ 0.009
    starts = np.array([d[0] for d in draws])
    assert (
        starts.min() == 0 and starts[lengths == 92].max() == 7 and starts[lengths == 96].max() == 3
    )
    assert protocol_length(40, coin=False) == 40 and protocol_length(40, coin=True) == 36
    assert protocol_length(199, coin=False) == 196
    with pytest.raises(FidevalError, match="under the minimum of 8 frames"):
        protocol_length(7, coin=True)


def test_to_evaluator_space(folder):
    ds, _, _, src = folder
    d = DATASETS[ds].dim_pose
    rng = np.random.default_rng(1)
    gmean, gstd = rng.standard_normal(d), rng.uniform(0.5, 3, d)
    feats = rng.standard_normal((3, 150, d))
    lengths = np.array([40, 148, 100])
    got, n = to_evaluator_space(
        (feats - gmean) / gstd, lengths, eval_mean=src.mean, eval_std=src.std, mean=gmean, std=gstd
    )
    direct, _ = to_evaluator_space(feats, lengths, eval_mean=src.mean, eval_std=src.std)
    assert got.shape == (3, 196, d) and n.tolist() == lengths.tolist()
    np.testing.assert_allclose(got, direct, atol=1e-5)
    np.testing.assert_allclose(direct[1, :148], (feats[1, :148] - src.mean) / src.std, atol=1e-5)
    assert not got[0, 40:].any() and not got[2, 100:].any()
    with pytest.raises(FidevalError, match="length 3 of row 1 is outside"):
        to_evaluator_space(feats, [40, 3, 40], eval_mean=src.mean, eval_std=src.std)
    with pytest.raises(FidevalError, match=rf"expected \(B, frames, {d}\)"):
        to_evaluator_space(feats[..., :-1], lengths, eval_mean=src.mean, eval_std=src.std)
    with pytest.raises(FidevalError, match="both"):
        to_evaluator_space(feats, lengths, eval_mean=src.mean, eval_std=src.std, mean=gmean)


def test_bad_folders_named(tmp_path):
    root = tmp_path / "h"
    write_dataset(root, "humanml", clips=8)
    np.save(root / "new_joint_vecs" / "000005.npy", np.zeros((60, 251), np.float32))
    with pytest.raises(FidevalError, match=r"000005\.npy: shape \(60, 251\) \(the kit width\)"):
        open_source(root)
    np.save(root / "new_joint_vecs" / "000005.npy", np.zeros((60, 263), np.float32))
    (root / "texts" / "000006.txt").write_text("a person walks##0.0#0.0\n")
    with pytest.raises(
        FidevalError, match=r"000006\.txt:1: caption 'a person walks' has no tokens"
    ):
        open_source(root)
    (root / "texts" / "000006.txt").unlink()
    with pytest.raises(FidevalError, match=r"1 clip\(s\) of test\.txt have no .*000006"):
        open_source(root)
    src = open_source(root, on_missing="skip")
    assert src.skipped["missing file"] == 1
    with pytest.raises(FidevalError, match=r"shape \(262,\), expected \(263,\)"):
        load_mean_std(np.zeros(262), np.ones(263), "humanml")
    with pytest.raises(FidevalError, match="≤ 0"):
        load_mean_std(np.zeros(251), np.zeros(251), "kit")
    with pytest.raises(FidevalError, match="no new_joint_vecs/ folder"):
        MotionTextSource(
            tmp_path,
            vectorizer=WordVectorizer(np.zeros((1, 3)), ["unk"], {"unk": 0}),
            mean=0,
            std=1,
        )
