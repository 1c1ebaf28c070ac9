"""Word vectorizer, caption lines and the restricted unpickler (text-to-motion protocol)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from fideval.errors import FidevalError
from fideval.motion.vectorizer import (
    POS_CLASSES,
    VIP_WORDS,
    WordVectorizer,
    load_plain_pickle,
    parse_caption_line,
    read_captions,
    sentence_tokens,
)

# A small vocabulary: the specials, plain words and one word of every VIP class.
VOCAB = ["unk", "sos", "eos", "a", "person", "the", "is", "on", "two", "he", "quick", "then"]
VIP_SAMPLE = {
    "Loc_VIP": "left",
    "Body_VIP": "arm",
    "Obj_VIP": "chair",
    "Act_VIP": "walk",
    "Desc_VIP": "slowly",
}
VOCAB += list(VIP_SAMPLE.values())


def write_glove(
    folder: Path, words: list[str], rng: np.random.Generator, dim: int = 300
) -> np.ndarray:
    """GloVe files as the protocol ships them; rows in a shuffled order."""
    folder.mkdir(parents=True, exist_ok=True)
    vectors = rng.standard_normal((len(words), dim)).astype(np.float32)
    rows = rng.permutation(len(words))
    np.save(folder / "our_vab_data.npy", vectors)
    (folder / "our_vab_words.pkl").write_bytes(pickle.dumps(list(words)))
    (folder / "our_vab_idx.pkl").write_bytes(
        pickle.dumps({w: int(r) for w, r in zip(words, rows, strict=True)})
    )
    return vectors[rows]  # vector of words[i] is row i of the result


@pytest.fixture
def vec(tmp_path):
    table = write_glove(tmp_path / "glove", VOCAB, np.random.default_rng(0))
    return WordVectorizer.from_dir(tmp_path / "glove"), dict(zip(VOCAB, table, strict=True))


def onehot_class(p: np.ndarray) -> int:
    assert p.shape == (15,) and p.sum() == 1 and set(np.unique(p)) == {0.0, 1.0}
    return int(np.argmax(p))


def test_known_words_and_tags(vec):
    v, table = vec
    assert len(v) == len(VOCAB) and v.dim == 300
    for tag in ("VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV"):
        w, p = v[f"person/{tag}"]
        np.testing.assert_array_equal(w, table["person"])
        assert onehot_class(p) == POS_CLASSES[tag]
    # A tag that is not a class name is OTHER (a class name as a tag is that class).
    for tag in ("PROPN", "PUNCT", "CCONJ", "verb", "OTHER"):
        assert onehot_class(v[f"person/{tag}"][1]) == POS_CLASSES["OTHER"]
    assert onehot_class(v["person/Body_VIP"][1]) == POS_CLASSES["Body_VIP"]


def test_every_vip_class_overrides_the_tag(vec):
    v, table = vec
    for cls_name, word in VIP_SAMPLE.items():
        for tag in ("NOUN", "VERB", "ADV", "PUNCT"):
            w, p = v[f"{word}/{tag}"]
            np.testing.assert_array_equal(w, table[word])
            assert onehot_class(p) == POS_CLASSES[cls_name]


def test_unknown_words_take_unk_and_other(vec):
    v, table = vec
    for token in ("zebra/NOUN", "kick/VERB", "feet/NOUN", "quickly/ADV"):
        # "kick", "feet" and "quickly" are VIP words, but not in this vocabulary.
        w, p = v[token]
        np.testing.assert_array_equal(w, table["unk"])
        assert onehot_class(p) == POS_CLASSES["OTHER"]


def test_vip_lists_are_the_protocol_facts():
    assert [POS_CLASSES[k] for k in VIP_WORDS] == [9, 10, 11, 12, 13]
    sizes = {k: len(v) for k, v in VIP_WORDS.items()}
    # Act_VIP lists "dance" twice in the original: 35 entries, 34 words.
    assert sizes == {"Loc_VIP": 12, "Body_VIP": 13, "Obj_VIP": 10, "Act_VIP": 34, "Desc_VIP": 12}
    words = [w for ws in VIP_WORDS.values() for w in ws]
    assert len(words) == len(set(words)), "a word in two VIP lists"
    assert {"counterclockwise", "thigh", "handrail", "climb", "sadly"} <= set(words)
    assert sorted(POS_CLASSES.values()) == list(range(15))


def test_sentence_padding_and_length(vec):
    v, table = vec
    tokens = ["a/DET", "person/NOUN", "walk/VERB"]
    w, p, n = v.sentence(tokens)
    assert w.shape == (22, 300) and p.shape == (22, 15) and w.dtype == np.float32 and n == 5
    np.testing.assert_array_equal(w[0], table["sos"])
    np.testing.assert_array_equal(w[1], table["a"])
    np.testing.assert_array_equal(w[4], table["eos"])
    for i in range(5, 22):
        np.testing.assert_array_equal(w[i], table["unk"])
        assert onehot_class(p[i]) == POS_CLASSES["OTHER"]
    assert onehot_class(p[0]) == onehot_class(p[4]) == POS_CLASSES["OTHER"]
    assert onehot_class(p[3]) == POS_CLASSES["Act_VIP"]
    # 25 tokens: the first 20 are kept, then eos; length 22.
    long = [f"{word}/NOUN" for word in (["he"] * 19 + ["two"] + ["then"] * 5)]
    w, _, n = v.sentence(long)
    assert n == 22
    np.testing.assert_array_equal(w[20], table["two"])
    np.testing.assert_array_equal(w[21], table["eos"])
    toks, n = sentence_tokens(["x/NOUN"] * 20)
    assert n == 22 and toks[-1] == "eos/OTHER" and len(toks) == 22


def test_batch(vec):
    v, _ = vec
    w, p, n = v.batch([["a/DET"], ["the/DET"] * 30, ["person/NOUN", "is/AUX"]])
    assert w.shape == (3, 22, 300) and p.shape == (3, 22, 15)
    assert n.tolist() == [3, 22, 4] and n.dtype == np.int64
    with pytest.raises(FidevalError, match="caption 1 has no tokens"):
        v.batch([["a/DET"], []])
    with pytest.raises(FidevalError, match="got a string"):
        v.batch(["a/DET person/NOUN"])
    with pytest.raises(FidevalError, match="not 'word/POS'"):
        v["person"]


class _Trap:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_restricted_unpickler_refuses_globals(tmp_path):
    trap = tmp_path / "was_run"
    bad = tmp_path / "our_vab_words.pkl"
    bad.write_bytes(pickle.dumps(["unk", _Trap(str(trap))]))
    with pytest.raises(FidevalError, match=r"our_vab_words\.pkl: refused to unpickle.*global"):
        load_plain_pickle(bad)
    assert not trap.exists()
    # A whole GloVe folder with that file is refused too.
    write_glove(tmp_path, ["unk", "a"], np.random.default_rng(1))
    bad.write_bytes(pickle.dumps(np.array([1, 2])))  # numpy objects are globals as well
    with pytest.raises(FidevalError, match="refused to unpickle"):
        WordVectorizer.from_dir(tmp_path)
    good = tmp_path / "ok.pkl"
    obj = {"a": 1, "b": [1, 2, "c"], "d": (1.5, None, True)}
    good.write_bytes(pickle.dumps(obj))
    assert load_plain_pickle(good) == obj


def test_bad_vocabulary_files(tmp_path):
    write_glove(tmp_path, ["a", "b"], np.random.default_rng(1))
    with pytest.raises(FidevalError, match="no 'unk' word"):
        WordVectorizer.from_dir(tmp_path)
    write_glove(tmp_path, ["unk", "b"], np.random.default_rng(1))
    (tmp_path / "our_vab_idx.pkl").write_bytes(pickle.dumps({"unk": 0, "b": 7}))
    with pytest.raises(FidevalError, match=r"word 'b' has row 7"):
        WordVectorizer.from_dir(tmp_path)
    (tmp_path / "our_vab_data.npy").unlink()
    with pytest.raises(FidevalError, match="cannot read word vectors"):
        WordVectorizer.from_dir(tmp_path)


def test_caption_lines(tmp_path):
    c = parse_caption_line("a person walks.#a/DET person/NOUN walk/VERB#0.0#0.0\n")
    assert c.text == "a person walks." and c.tokens == ("a/DET", "person/NOUN", "walk/VERB")
    assert c.whole_motion
    c = parse_caption_line("then sits#then/ADV sit/VERB#nan#nan")
    assert (c.start, c.end) == (0.0, 0.0) and c.whole_motion
    c = parse_caption_line("then sits#then/ADV sit/VERB#1.5#4.25")
    assert (c.start, c.end) == (1.5, 4.25) and not c.whole_motion
    f = tmp_path / "000001.txt"
    f.write_text("ok#a/DET#0.0#0.0\nno tokens here##0.0#0.0\n")
    with pytest.raises(
        FidevalError, match=r"000001\.txt:2: caption 'no tokens here' has no tokens"
    ):
        read_captions(f)
    with pytest.raises(FidevalError, match="expected 'caption#word/POS"):
        parse_caption_line("just a caption")
    with pytest.raises(FidevalError, match="token 'walk' is not 'word/POS'"):
        parse_caption_line("x#a/DET walk#0#0")
    with pytest.raises(FidevalError, match="from time 'soon' is not a number"):
        parse_caption_line("x#a/DET#soon#0")
