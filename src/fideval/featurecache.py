"""A cache of extracted features, so a second evaluation of the same images extracts nothing.

An entry is one ``.npz`` (written atomically) holding the features (``features``, float32
as the extractor gave them), the class logits when they were taken (``logits``) and the
provenance (``meta``). Its file name is the SHA-256 of the key:

    extractor id · weights SHA-256 · dims · profile · image size · logits form ·
    source fingerprint (every file's name, size and modification time, or every
    file's content hash with ``content=True``)

so any change to a file, the network or the preprocessing misses the cache. The key is
also stored inside the entry and compared in full when it is read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._text import shown
from .errors import FidevalError
from .io.atomic import atomic_write, check_writable

__all__ = ["FeatureCache"]


class FeatureCache:
    """Features of image sources, keyed by provenance and a fingerprint of every file."""

    def __init__(self, folder: str | os.PathLike[str], *, content: bool = False) -> None:
        self.folder = Path(folder)
        self.content = content
        if self.folder.exists() and not self.folder.is_dir():
            raise FidevalError(f"{shown(self.folder)}: exists and is not a folder (feature cache)")
        check_writable(self.folder / "probe")  # before any work: a read-only cache fails now

    def key(self, source: Any, extractor: Any, logits: bool) -> dict[str, Any] | None:
        """The full key of ``source`` through ``extractor``; None when not cacheable
        (a one-pass iterable has no fingerprint)."""
        fingerprint = source.fingerprint(self.content)
        if fingerprint is None:
            return None
        prov = dict(extractor.provenance())
        keep = ("extractor", "weights_sha256", "dims", "profile", "image_size")
        return {
            **{k: prov.get(k) for k in keep},
            "logits": bool(logits),
            "logits_bias": getattr(extractor, "logits_bias", None) if logits else None,
            "source": fingerprint,
        }

    def path(self, key: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
        return self.folder / f"features-{digest}.npz"

    def load(self, key: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None, dict] | None:
        """(features, logits or None, provenance) of a cached entry, or None."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("cache_key") != key:
                    return None
                feats = np.asarray(z["features"])
                logits = np.asarray(z["logits"]) if "logits" in z.files else None
        except (OSError, ValueError, KeyError, EOFError):
            return None  # a damaged entry is recomputed and overwritten
        return feats, logits, meta

    def save(
        self,
        key: dict[str, Any],
        features: np.ndarray,
        logits: np.ndarray | None,
        meta: dict[str, Any],
    ) -> Path:
        path = self.path(key)
        arrays: dict[str, Any] = {
            "features": np.ascontiguousarray(features),
            "meta": np.array(json.dumps({**meta, "cache_key": key})),
        }
        if logits is not None:
            arrays["logits"] = np.ascontiguousarray(logits)
        with atomic_write(path) as fh:
            np.savez(fh, **arrays)
        return path
