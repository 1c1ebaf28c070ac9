"""Captions as the text-to-motion evaluator reads them: tokens, word vectors, POS one-hots.

**Tokens.** HumanML3D and KIT-ML ship each caption with its tokens, one line
per caption in ``texts/<name>.txt``::

    a person walks forward.#a/DET person/NOUN walk/VERB forward/ADV#0.0#0.0

``caption # tokens # from # to``: the tokens are ``word/POS`` (lemmatised word,
spaCy universal POS tag) separated by spaces; ``from``/``to`` are the seconds of
the motion the caption describes (0.0 and 0.0, or NaN, for the whole motion).

**Sentence.** The evaluator reads ``sos/OTHER``, the first 20 tokens,
``eos/OTHER``, then ``unk/OTHER`` up to 22 tokens; the length given to the
text encoder is min(n, 20) + 2 for n tokens.

**Word vectors.** 300-d GloVe vectors of the protocol's 4 199-word vocabulary
(``glove/our_vab_data.npy`` (V, 300), ``our_vab_words.pkl`` the word list,
``our_vab_idx.pkl`` word → row). A word outside the vocabulary takes the
vector of ``unk`` and the POS class OTHER.

**POS one-hot** over 15 classes (:data:`POS_CLASSES`). A vocabulary word in
one of the five "VIP" lists (:data:`VIP_WORDS`) takes that list's class
whatever its tag; any other word takes its tag's class, and a tag outside the
first nine classes takes OTHER.

The pickles are read with a restricted unpickler that builds only lists,
dicts, strings and numbers: any pickled class or function is refused.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FidevalError

#: The POS classes of the one-hot, in order.
POS_CLASSES: dict[str, int] = {
    "VERB": 0,
    "NOUN": 1,
    "DET": 2,
    "ADP": 3,
    "NUM": 4,
    "AUX": 5,
    "PRON": 6,
    "ADJ": 7,
    "ADV": 8,
    "Loc_VIP": 9,
    "Body_VIP": 10,
    "Obj_VIP": 11,
    "Act_VIP": 12,
    "Desc_VIP": 13,
    "OTHER": 14,
}

#: Words that take a "VIP" class instead of their tag (facts of the protocol's
#: vectorizer; checked in this order, the first list that holds the word wins).
VIP_WORDS: dict[str, frozenset[str]] = {
    # locations and directions
    "Loc_VIP": frozenset(
        "left right clockwise counterclockwise anticlockwise forward back backward "
        "up down straight curve".split()
    ),
    # body parts
    "Body_VIP": frozenset(
        "arm chin foot feet face hand mouth leg waist eye knee shoulder thigh".split()
    ),
    # objects
    "Obj_VIP": frozenset(
        "stair dumbbell chair window floor car ball handrail baseball basketball".split()
    ),
    # actions
    "Act_VIP": frozenset(
        "walk run swing pick bring kick put squat throw hop dance jump turn stumble stop "
        "sit lift lower raise wash stand kneel stroll rub bend balance flap jog shuffle "
        "lean rotate spin spread climb".split()
    ),
    # manner
    "Desc_VIP": frozenset(
        "slowly carefully fast careful slow quickly happy angry sad happily angrily sadly".split()
    ),
}

NUM_POS = len(POS_CLASSES)
#: Words per sentence before sos/eos, and tokens per prepared sentence.
MAX_WORDS = 20
SENTENCE_TOKENS = MAX_WORDS + 2
UNK = "unk"


class _PlainUnpickler(pickle.Unpickler):
    """Builds lists, dicts, tuples, strings and numbers only; refuses every global."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


def load_plain_pickle(path: str | Path) -> Any:
    """Read a pickle of builtins (list / dict / str / int / float); never runs pickled code."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FidevalError(f"cannot read {p}: {exc}") from exc
    try:
        return _PlainUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise FidevalError(
            f"{p}: refused to unpickle ({exc}); only lists, dicts, strings and numbers are read"
        ) from exc
    except Exception as exc:
        raise FidevalError(f"{p}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class Caption:
    """One line of a ``texts/*.txt`` file: the caption, its tokens, and its time span (s)."""

    text: str
    tokens: tuple[str, ...]
    start: float
    end: float

    @property
    def whole_motion(self) -> bool:
        """True when the caption describes the whole motion (from = to = 0)."""
        return self.start == 0.0 and self.end == 0.0


def _seconds(text: str, what: str, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise FidevalError(f"{where}: {what} time {text!r} is not a number") from None
    return 0.0 if math.isnan(v) else v


def parse_caption_line(line: str, where: str = "caption") -> Caption:
    """Parse ``caption#tok/POS tok/POS …#from#to`` (NaN times read as 0.0)."""
    parts = line.rstrip("\r\n").strip().split("#")
    if len(parts) < 4:
        raise FidevalError(
            f"{where}: expected 'caption#word/POS …#from#to', got {len(parts)} field(s): "
            f"{line.strip()[:80]!r}"
        )
    text, tok, start, end = parts[0], parts[1], parts[2], parts[3]
    tokens = tuple(tok.split())
    if not tokens:
        raise FidevalError(f"{where}: caption {text[:60]!r} has no tokens (field 2 is empty)")
    for t in tokens:
        if "/" not in t or not t.rsplit("/", 1)[0] or not t.rsplit("/", 1)[1]:
            raise FidevalError(f"{where}: token {t!r} is not 'word/POS'")
    return Caption(text, tokens, _seconds(start, "from", where), _seconds(end, "to", where))


def read_captions(path: str | Path) -> list[Caption]:
    """All captions of one ``texts/<name>.txt`` file (blank lines skipped)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FidevalError(f"cannot read captions {p}: {exc}") from exc
    out = [parse_caption_line(s, f"{p}:{i + 1}") for i, s in enumerate(lines) if s.strip()]
    if not out:
        raise FidevalError(f"{p}: no captions")
    return out


def sentence_tokens(tokens: Sequence[str], max_words: int = MAX_WORDS) -> tuple[list[str], int]:
    """``sos`` + first ``max_words`` tokens + ``eos``, ``unk``-padded; and the length used.

    Returns (tokens of length ``max_words + 2``, min(n, max_words) + 2).
    """
    if len(tokens) == 0:
        raise FidevalError("a caption without tokens cannot be embedded")
    words = ["sos/OTHER", *list(tokens)[:max_words], "eos/OTHER"]
    n = len(words)
    return words + ["unk/OTHER"] * (max_words + 2 - n), n


class WordVectorizer:
    """Word vectors and POS one-hots of ``word/POS`` tokens (module doc).

    Build from the GloVe folder with :meth:`from_dir`, or from arrays:
    ``vectors`` (V, 300), ``words`` (the vocabulary), ``word_to_row`` (word →
    row of ``vectors``). The vocabulary must hold ``unk``.
    """

    def __init__(
        self, vectors: Any, words: Iterable[str], word_to_row: dict[str, int], *, where: str = ""
    ) -> None:
        at = f"{where}: " if where else ""
        v = np.asarray(vectors)
        if v.ndim != 2 or not np.issubdtype(v.dtype, np.floating):
            raise FidevalError(f"{at}word vectors must be a (V, dim) float array, got {v.shape}")
        if not np.all(np.isfinite(v)):
            raise FidevalError(f"{at}word vectors contain NaN or Inf")
        if not isinstance(word_to_row, dict):
            raise FidevalError(f"{at}word index is a {type(word_to_row).__name__}, not a dict")
        table: dict[str, np.ndarray] = {}
        for w in words:
            if not isinstance(w, str):
                raise FidevalError(f"{at}vocabulary entry {w!r} is not a string")
            row = word_to_row.get(w)
            if not isinstance(row, int) or isinstance(row, bool) or not 0 <= row < v.shape[0]:
                raise FidevalError(
                    f"{at}word {w!r} has row {row!r}, expected an integer in [0, {v.shape[0]})"
                )
            table[w] = v[row].astype(np.float32)
        if UNK not in table:
            raise FidevalError(f"{at}the vocabulary has no {UNK!r} word (unknown words need it)")
        self.dim = int(v.shape[1])
        self._vec = table
        self._sha256 = ""

    @property
    def sha256(self) -> str:
        """SHA-256 over the sorted vocabulary and its vectors (float32): what changes the inputs."""
        if not self._sha256:
            h = hashlib.sha256()
            for w in sorted(self._vec):
                h.update(w.encode() + b"\0")
                h.update(self._vec[w].tobytes())
            self._sha256 = h.hexdigest()
        return self._sha256

    @classmethod
    def from_dir(cls, glove_dir: str | Path, prefix: str = "our_vab") -> WordVectorizer:
        """Read ``{prefix}_data.npy``, ``{prefix}_words.pkl``, ``{prefix}_idx.pkl``."""
        d = Path(glove_dir)
        data = d / f"{prefix}_data.npy"
        try:
            vectors = np.load(data, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise FidevalError(f"cannot read word vectors {data}: {exc}") from exc
        words = load_plain_pickle(d / f"{prefix}_words.pkl")
        idx = load_plain_pickle(d / f"{prefix}_idx.pkl")
        if not isinstance(words, list | tuple):
            raise FidevalError(f"{d / f'{prefix}_words.pkl'}: expected a list of words")
        return cls(vectors, words, idx, where=str(d))

    def __len__(self) -> int:
        return len(self._vec)

    def __contains__(self, word: object) -> bool:
        return word in self._vec

    def pos_class(self, token: str) -> int:
        """The POS class index of a ``word/POS`` token (VIP lists first; unknown → OTHER)."""
        word, tag = _split(token)
        if word not in self._vec:
            return POS_CLASSES["OTHER"]
        for cls_name, vocab in VIP_WORDS.items():
            if word in vocab:
                return POS_CLASSES[cls_name]
        return POS_CLASSES.get(tag, POS_CLASSES["OTHER"])

    def __getitem__(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """(word vector (dim,), POS one-hot (15,)) of a ``word/POS`` token, float32."""
        word, _ = _split(token)
        onehot = np.zeros(NUM_POS, dtype=np.float32)
        onehot[self.pos_class(token)] = 1.0
        return self._vec.get(word, self._vec[UNK]), onehot

    def sentence(
        self, tokens: Sequence[str], max_words: int = MAX_WORDS
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """(word_embs (22, dim), pos_onehot (22, 15), length) of one caption's tokens."""
        toks, n = sentence_tokens(tokens, max_words)
        pairs = [self[t] for t in toks]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), n

    def batch(
        self, token_lists: Sequence[Sequence[str]], max_words: int = MAX_WORDS
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stacked :meth:`sentence` of each caption: (B, 22, dim), (B, 22, 15), (B,) int64."""
        if len(token_lists) == 0:
            raise FidevalError("no captions to vectorize")
        out = []
        for i, toks in enumerate(token_lists):
            if isinstance(toks, str):
                raise FidevalError(
                    f"caption {i}: expected a list of 'word/POS' tokens, got a string "
                    f"({toks[:40]!r}); split it or use parse_caption_line"
                )
            if len(toks) == 0:
                raise FidevalError(f"caption {i} has no tokens")
            out.append(self.sentence(toks, max_words))
        return (
            np.stack([o[0] for o in out]),
            np.stack([o[1] for o in out]),
            np.asarray([o[2] for o in out], dtype=np.int64),
        )


def _split(token: str) -> tuple[str, str]:
    if not isinstance(token, str) or "/" not in token:
        raise FidevalError(f"token {token!r} is not 'word/POS'")
    word, tag = token.rsplit("/", 1)
    return word, tag
