"""The text-to-motion evaluator of Guo et al. (2022), written for fideval.

HumanML3D and KIT-ML results (R-precision, Matching Score, FID, Diversity,
MultiModality) are computed on the embeddings of one fixed network, trained by
the text-to-motion authors and shipped as ``finest.tar``
(``t2m/text_mot_match/model/finest.tar``, ``kit/text_mot_match/model/finest.tar``).
This module rebuilds that network from its published description, with the
checkpoint's parameter names, so that the file loads with strict keys:

* **movement encoder** (``movement_encoder``): the motion features (B, T, D)
  without their last 4 channels (the foot contacts), D = 263 (HumanML3D) or
  251 (KIT), go through Conv1d(D−4 → 512, kernel 4, stride 2, padding 1),
  LeakyReLU(0.2), Conv1d(512 → 512, 4, 2, 1), LeakyReLU(0.2) (the dropout
  between them is the identity in eval mode), then Linear(512 → 512) per time
  step: (B, T, D) → (B, ⌊T/4⌋, 512), one "movement" per 4 frames.
* **motion encoder** (``motion_encoder``): Linear(512 → 1024) per movement, a
  bidirectional GRU (hidden 1024, learned initial state ``hidden`` (2, 1, 1024))
  over the first ⌊L/4⌋ movements of a motion of L frames; the final forward and
  backward states, concatenated (2048), go through Linear(2048 → 1024),
  LayerNorm, LeakyReLU(0.2), Linear(1024 → 512).
* **text encoder** (``text_encoder``): per token, the 300-d GloVe word vector
  plus Linear(15 → 300) of its part-of-speech one-hot, then Linear(300 → 512);
  a bidirectional GRU (hidden 512, learned ``hidden`` (2, 1, 512)) over the
  first ``cap_len`` tokens; the two final states (1024) go through
  Linear(1024 → 512), LayerNorm, LeakyReLU(0.2), Linear(512 → 512).

Both embeddings live in one 512-d space; distances between them are the
protocol's Matching Score, in the evaluator's (arbitrary) units.

Differences from the published wrapper, on purpose:

* embeddings come back in **input order** (the published
  ``get_co_embeddings`` sorts the batch by motion length and returns the text
  embeddings re-ordered to match, which silently pairs them with the wrong
  rows for any caller that keeps its own order);
* frames at and after each motion's length are **set to zero** before the
  movement encoder (``pad="zero"``, the ground-truth loader's convention).
  Frames L, L+1, L+2 past a length L reach the last movement through the two
  convolutions, so the padding is part of the embedding: MDM's generated
  motions carry model output there; ``pad="keep"`` uses the frames as given,
  which is how MDM's published loop embeds its generated motions.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..errors import FidevalError
from ..features.base import state_sha256

#: Pose feature width (channels per frame) of each dataset.
DIM_POSE = {"humanml": 263, "kit": 251}
#: Frames per movement (the two stride-2 convolutions): lengths are used as L // 4.
UNIT_LENGTH = 4
#: Size of the word vectors (GloVe), of the POS one-hot, and of the embeddings.
DIM_WORD = 300
DIM_POS = 15
DIM_EMBEDDING = 512
#: Tokens in a prepared sentence: sos + at most 20 words + eos.
MAX_TEXT_TOKENS = 22
MODULES = ("movement_encoder", "text_encoder", "motion_encoder")
_DATASET_ALIASES = {"humanml": "humanml", "humanml3d": "humanml", "t2m": "humanml", "kit": "kit"}


def canonical_dataset(dataset: str) -> str:
    """``"humanml"`` or ``"kit"`` for the names in use (humanml3d, t2m, kit, kit-ml)."""
    key = str(dataset).strip().lower().replace("-ml", "").replace("_", "")
    if key not in _DATASET_ALIASES:
        raise FidevalError(
            f"unknown text-to-motion dataset {dataset!r}; expected 'humanml' or 'kit'"
        )
    return _DATASET_ALIASES[key]


class MovementEncoder(nn.Module):
    """(B, T, D−4) motion features → (B, ⌊T/4⌋, 512) movements (module doc)."""

    def __init__(self, in_channels: int, hidden: int = 512, out: int = 512) -> None:
        super().__init__()
        # Keys main.0 / main.3 / out_net as in finest.tar; main.1 and main.4 are
        # Dropout(0.2) (the identity at evaluation), main.2 and main.5 LeakyReLU.
        self.main = nn.Sequential(
            nn.Conv1d(in_channels, hidden, kernel_size=4, stride=2, padding=1),
            nn.Dropout(0.2),
            nn.LeakyReLU(0.2),
            nn.Conv1d(hidden, out, kernel_size=4, stride=2, padding=1),
            nn.Dropout(0.2),
            nn.LeakyReLU(0.2),
        )
        self.out_net = nn.Linear(out, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.main(x.transpose(1, 2)).transpose(1, 2)
        return self.out_net(h)


def _output_net(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(2 * width, width), nn.LayerNorm(width), nn.LeakyReLU(0.2), nn.Linear(width, out)
    )


def _bigru_last(
    gru: nn.GRU, hidden: torch.Tensor, x: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """Final forward and backward states (B, 2·H) of ``gru`` over x[:, :lengths], input order."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    h0 = hidden.expand(-1, x.shape[0], -1).contiguous()
    _, h_n = gru(packed, h0)  # h_n (2, B, H), already back in input order
    return torch.cat([h_n[0], h_n[1]], dim=-1)


class TextEncoder(nn.Module):
    """(B, 22, 300) word vectors, (B, 22, 15) POS one-hots, lengths → (B, 512)."""

    def __init__(
        self, word: int = DIM_WORD, pos: int = DIM_POS, hidden: int = 512, out: int = 512
    ) -> None:
        super().__init__()
        self.pos_emb = nn.Linear(pos, word)
        self.input_emb = nn.Linear(word, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.output_net = _output_net(hidden, out)
        self.hidden = nn.Parameter(torch.zeros(2, 1, hidden))

    def forward(
        self, word_embs: torch.Tensor, pos_onehot: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        x = self.input_emb(word_embs + self.pos_emb(pos_onehot))
        return self.output_net(_bigru_last(self.gru, self.hidden, x, lengths))


class MotionEncoder(nn.Module):
    """(B, T', 512) movements and movement counts → (B, 512)."""

    def __init__(self, inp: int = 512, hidden: int = 1024, out: int = 512) -> None:
        super().__init__()
        self.input_emb = nn.Linear(inp, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.output_net = _output_net(hidden, out)
        self.hidden = nn.Parameter(torch.zeros(2, 1, hidden))

    def forward(self, movements: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.output_net(
            _bigru_last(self.gru, self.hidden, self.input_emb(movements), lengths)
        )


def random_checkpoint(dataset: str = "humanml", seed: int = 0) -> dict[str, Any]:
    """A seeded random ``finest.tar``-shaped checkpoint (tests, synthetic runs).

    The recipe of the parity fixture: for module M, key K of shape S (in
    state-dict order), ``torch.randn(S)`` from a generator seeded with
    ``crc32(f"{M}.{K}") + 1000·seed``, scaled by 1/√(prod S[1:]) for tensors of
    two or more dimensions and by 0.1 otherwise; LayerNorm weights get +1.
    """
    net = _build(canonical_dataset(dataset))
    ckpt: dict[str, Any] = {"epoch": 0}
    for module in MODULES:
        state: dict[str, torch.Tensor] = {}
        for key, ref in getattr(net, module).state_dict().items():
            shape = tuple(ref.shape)
            g = torch.Generator().manual_seed(zlib.crc32(f"{module}.{key}".encode()) + 1000 * seed)
            scale = 1.0 / float(np.prod(shape[1:])) ** 0.5 if len(shape) >= 2 else 0.1
            w = torch.randn(shape, generator=g, dtype=torch.float32) * scale
            if key == "output_net.1.weight":
                w = w + 1.0
            state[key] = w
        ckpt[module] = state
    return ckpt


class _Networks(nn.Module):
    def __init__(self, dim_pose: int) -> None:
        super().__init__()
        self.movement_encoder = MovementEncoder(dim_pose - 4)
        self.text_encoder = TextEncoder()
        self.motion_encoder = MotionEncoder()


def _build(dataset: str) -> _Networks:
    with torch.device("meta"):  # shapes only; the weights come from the checkpoint
        return _Networks(DIM_POSE[dataset])


def _state_sha256(ckpt: Mapping[str, Any]) -> str:
    """The weights hash of the three state dicts, as one state dict ``module.key``."""
    return state_sha256({f"{m}.{k}": v for m in MODULES for k, v in ckpt[m].items()})


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on the CPU; errors name the file.

    Only tensors and plain containers are read: a checkpoint that needs other
    Python objects is refused (one :class:`FidevalError` that names the file and
    what the safe loader refused), never unpickled.
    """
    p = Path(path)
    if not p.is_file():
        raise FidevalError(f"evaluator checkpoint {p} does not exist (expected finest.tar)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = " ".join(str(exc).split())[:400]
        raise FidevalError(
            f"evaluator checkpoint {p}: torch.load(weights_only=True) refused it ({first}); "
            "fideval reads only tensors and plain containers. Re-save the three state dicts "
            "movement_encoder, text_encoder, motion_encoder with torch.save from a trusted copy"
        ) from exc
    except Exception as exc:
        raise FidevalError(f"evaluator checkpoint {p} cannot be read: {exc}") from exc
    if not isinstance(ckpt, Mapping):
        raise FidevalError(f"evaluator checkpoint {p} holds a {type(ckpt).__name__}, not a dict")
    return dict(ckpt)


def _check_tensor(x: Any, name: str, ndim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    except (TypeError, ValueError) as exc:
        raise FidevalError(f"{name}: not an array ({exc})") from exc
    if t.ndim != ndim:
        raise FidevalError(f"{name}: expected {ndim} dimensions, got shape {tuple(t.shape)}")
    if dtype.is_floating_point:
        if not (
            t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.uint8, torch.bool)
        ):
            raise FidevalError(f"{name}: expected real numbers, got {t.dtype}")
        t = t.to(dtype)
        if not torch.isfinite(t).all():
            rows = torch.nonzero(~torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)).flatten()
            raise FidevalError(f"{name}: NaN or Inf in rows {rows[:10].tolist()}")
    else:
        if t.is_floating_point() and not torch.equal(t, t.round()):
            raise FidevalError(f"{name}: lengths must be whole numbers")
        t = t.to(torch.int64)
    return t


class T2MEvaluator(nn.Module):
    """The HumanML3D / KIT-ML text-to-motion evaluator: text and motion embeddings (B, 512).

    Build it with :meth:`from_checkpoint`. ``ev.text_embeddings(word_embs,
    pos_onehot, cap_lens)`` and ``ev.motion_embeddings(motions, m_lens)`` return
    float32 (B, 512) tensors on the evaluator's device, row i for input row i,
    whatever the lengths. Calling the module, ``ev(motions, m_lens)``, is
    ``motion_embeddings``. Always in eval mode; gradients are off.

    Attributes (the extractor contract): ``id`` (``"t2m-evaluator-humanml"`` or
    ``"t2m-evaluator-kit"``), ``dims`` (512), ``weights_sha256``, ``dataset``,
    ``dim_pose`` (263 or 251), ``unit_length`` (4).
    """

    dims = DIM_EMBEDDING
    unit_length = UNIT_LENGTH
    max_text_tokens = MAX_TEXT_TOKENS

    def __init__(self, networks: _Networks, dataset: str, weights_sha256: str, source: str) -> None:
        super().__init__()
        self.movement_encoder = networks.movement_encoder
        self.text_encoder = networks.text_encoder
        self.motion_encoder = networks.motion_encoder
        self.dataset = dataset
        self.dim_pose = DIM_POSE[dataset]
        self.id = f"t2m-evaluator-{dataset}"
        self.weights_sha256 = weights_sha256
        self.weights_source = source
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_checkpoint(
        cls,
        path_or_state: str | Path | Mapping[str, Any],
        dataset: str = "humanml",
        *,
        device: str | torch.device | None = None,
    ) -> T2MEvaluator:
        """Load ``finest.tar`` (a path) or its contents (a dict with the three state dicts).

        Keys are strict: a missing or unexpected key, or a shape that does not
        fit ``dataset``, raises a :class:`FidevalError` naming the module and
        the key. Other entries of the checkpoint (``epoch``, optimizer states)
        are ignored. ``weights_sha256`` is the SHA-256 of the file for a path,
        and of the three state dicts' tensors (module, key, dtype, shape, bytes,
        keys sorted) for a dict.
        """
        ds = canonical_dataset(dataset)
        if isinstance(path_or_state, str | Path):
            from ..io.weights import sha256_file

            where = str(path_or_state)
            ckpt = load_checkpoint(path_or_state)
            sha = sha256_file(path_or_state)
        elif isinstance(path_or_state, Mapping):
            where = "the given checkpoint dict"
            ckpt = dict(path_or_state)
            sha = ""
        else:
            raise FidevalError(
                f"from_checkpoint: expected a path to finest.tar or its dict, got "
                f"{type(path_or_state).__name__}"
            )
        missing = [m for m in MODULES if m not in ckpt]
        if missing:
            raise FidevalError(
                f"{where}: no {', '.join(missing)} in the checkpoint (keys found: "
                f"{sorted(map(str, ckpt))[:20]}); expected text_mot_match's finest.tar"
            )
        net = _build(ds)
        for module in MODULES:
            _load_module(getattr(net, module), ckpt[module], module, where, ds)
        if not sha:
            sha = _state_sha256(ckpt)
        ev = cls(net, ds, sha, where)
        if device is not None:
            ev = ev.to(device)
        return ev

    @property
    def device(self) -> torch.device:
        return self.motion_encoder.hidden.device

    def train(self, mode: bool = True) -> T2MEvaluator:
        if mode:
            raise RuntimeError("T2MEvaluator is an evaluation network; it has no train mode")
        return super().train(False)

    def provenance(self) -> dict[str, Any]:
        """What made the embeddings: extractor id, weights hash, dims, dataset, conventions."""
        return {
            "extractor": self.id,
            "weights_sha256": self.weights_sha256,
            "dims": self.dims,
            "dataset": self.dataset,
            "dim_pose": self.dim_pose,
            "unit_length": self.unit_length,
            "dtype": "float32",
        }

    @torch.no_grad()
    def text_embeddings(self, word_embs: Any, pos_onehot: Any, cap_lens: Any) -> torch.Tensor:
        """Text embeddings (B, 512), row i for caption i.

        ``word_embs`` (B, T, 300) GloVe vectors and ``pos_onehot`` (B, T, 15) as
        :class:`fideval.motion.WordVectorizer` prepares them (T = 22: sos, up to
        20 words, eos, ``unk`` padding); ``cap_lens`` (B,) the number of tokens
        used, 1 ≤ cap_len ≤ T (sos and eos included).
        """
        w = _check_tensor(word_embs, "word_embs", 3)
        p = _check_tensor(pos_onehot, "pos_onehot", 3)
        n = _check_tensor(cap_lens, "cap_lens", 1, torch.int64)
        b, t = w.shape[:2]
        if w.shape[2] != DIM_WORD:
            raise FidevalError(f"word_embs: expected (B, T, {DIM_WORD}), got {tuple(w.shape)}")
        if tuple(p.shape) != (b, t, DIM_POS):
            raise FidevalError(
                f"pos_onehot: expected {(b, t, DIM_POS)} to match word_embs, got {tuple(p.shape)}"
            )
        _check_lengths(n, b, 1, t, "cap_lens", "tokens")
        if b == 0:
            return torch.zeros(0, self.dims, device=self.device)
        dev = self.device
        return self.text_encoder(w.to(dev), p.to(dev), n)

    @torch.no_grad()
    def motion_embeddings(self, motions: Any, m_lens: Any, *, pad: str = "zero") -> torch.Tensor:
        """Motion embeddings (B, 512), row i for motion i.

        ``motions`` (B, T, dim_pose) in the evaluator's normalization
        ((x − mean) / std with ``t2m_mean.npy``/``t2m_std.npy`` or the KIT files);
        ``m_lens`` (B,) frames used, 4 ≤ L ≤ T; the GRU runs over L // 4
        movements. ``pad="zero"`` (default) sets frames L… to zero first (the
        ground-truth convention; then any T ≥ L gives the same embedding);
        ``pad="keep"`` uses them as given.
        """
        m = _check_tensor(motions, "motions", 3)
        n = _check_tensor(m_lens, "m_lens", 1, torch.int64)
        b, t, d = m.shape
        if d != self.dim_pose:
            other = {v: k for k, v in DIM_POSE.items()}.get(d)
            hint = f" (that is the {other} width)" if other else ""
            raise FidevalError(
                f"motions: width {d}{hint}, but the {self.dataset} evaluator takes {self.dim_pose} "
                f"channels per frame; shape {tuple(m.shape)}, expected (B, T, {self.dim_pose})"
            )
        _check_lengths(n, b, self.unit_length, t, "m_lens", "frames")
        if pad not in ("zero", "keep"):
            raise FidevalError(f"pad must be 'zero' or 'keep', got {pad!r}")
        if b == 0:
            return torch.zeros(0, self.dims, device=self.device)
        dev = self.device
        m = m.to(dev)
        if pad == "zero":
            # Frames ≥ L never matter past L + 2; pad to a common length then zero.
            span = int(n.max()) + self.unit_length
            if t < span:
                m = torch.cat([m, m.new_zeros(b, span - t, d)], dim=1)
            m = m[:, :span]
            keep = torch.arange(m.shape[1], device=dev)[None, :] < n.to(dev)[:, None]
            m = m * keep[..., None]
        movements = self.movement_encoder(m[..., :-4])
        return self.motion_encoder(movements, n // self.unit_length)

    def forward(self, motions: Any, m_lens: Any) -> torch.Tensor:
        return self.motion_embeddings(motions, m_lens)

    def extra_repr(self) -> str:
        sha = self.weights_sha256[:12]
        return f"dataset={self.dataset!r}, dim_pose={self.dim_pose}, weights_sha256={sha}…"


def _check_lengths(n: torch.Tensor, b: int, low: int, high: int, name: str, unit: str) -> None:
    if n.shape[0] != b:
        raise FidevalError(f"{name}: {n.shape[0]} lengths for {b} rows")
    bad = torch.nonzero((n < low) | (n > high)).flatten()
    if bad.numel():
        i = int(bad[0])
        why = f"under the minimum {low}" if int(n[i]) < low else f"over the {high} {unit} given"
        extra = (
            f" (the motion encoder needs at least one movement of {UNIT_LENGTH} frames)"
            if name == "m_lens" and int(n[i]) < low
            else ""
        )
        raise FidevalError(
            f"{name}[{i}] = {int(n[i])} {unit} is {why}{extra}; rows {bad[:10].tolist()} "
            f"are out of [{low}, {high}]"
        )


def _load_module(module: nn.Module, state: Any, name: str, where: str, dataset: str) -> None:
    if not isinstance(state, Mapping):
        raise FidevalError(f"{where}: {name} is a {type(state).__name__}, not a state dict")
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(
                f"missing key {name}.{missing[0]}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        if unexpected:
            parts.append(
                f"unexpected key {name}.{unexpected[0]}"
                + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
            )
        raise FidevalError(f"{where}: {'; '.join(parts)} — not the text_mot_match evaluator")
    tensors: dict[str, torch.Tensor] = {}
    for key, ref in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise FidevalError(f"{where}: {name}.{key} is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != tuple(ref.shape):
            hint = ""
            if key == "main.0.weight" and value.ndim == 3:
                found = {v - 4: k for k, v in DIM_POSE.items()}.get(int(value.shape[1]))
                if found and found != dataset:
                    hint = f"; this is the {found} evaluator, pass dataset={found!r}"
            raise FidevalError(
                f"{where}: {name}.{key} has shape {tuple(value.shape)}, expected "
                f"{tuple(ref.shape)} for the {dataset} evaluator{hint}"
            )
        if not value.is_floating_point():
            raise FidevalError(f"{where}: {name}.{key} has dtype {value.dtype}, expected floats")
        if not torch.isfinite(value).all():
            raise FidevalError(f"{where}: {name}.{key} contains NaN or Inf")
        tensors[key] = value.detach().to("cpu", torch.float32).clone()
    module.load_state_dict(tensors, strict=True, assign=True)
