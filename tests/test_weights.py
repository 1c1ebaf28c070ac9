"""Weights store: lookup order, verified atomic download (never the network), offline error."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error

import pytest
import torch

from fideval.errors import FidevalError
from fideval.io import weights as W

CONTENT = b"not really inception weights\n" * 100
PREFIX = hashlib.sha256(CONTENT).hexdigest()[:8]
NAME = f"test-weights-{PREFIX}.pth"


class _NoNetwork:
    calls: list[str]

    def __init__(self) -> None:
        self.calls = []

    def __call__(self, url, timeout=None):
        self.calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every folder the store looks at lives under tmp_path; no network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.delenv("FIDEVAL_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("FIDEVAL_OFFLINE", raising=False)
    opener = _NoNetwork()
    monkeypatch.setattr(W, "_urlopen", opener)
    return opener


def _put(folder, name=NAME, content=CONTENT):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return folder / name


def _resolve(**kw):
    return W.resolve_weights(
        name=NAME, url="https://example.invalid/" + NAME, sha256_prefix=PREFIX, **kw
    )


def test_search_dirs_are_the_documented_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("FIDEVAL_WEIGHTS_DIR", str(tmp_path / "env"))
    labels = [(label, str(p)) for label, p in W.search_dirs()]
    assert labels == [
        ("FIDEVAL_WEIGHTS_DIR", str(tmp_path / "env")),
        ("user cache", str(tmp_path / "xdg" / "fideval")),
        ("torch hub", str(tmp_path / "torch" / "hub" / "checkpoints")),
    ]
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub")


def test_user_cache_without_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert W.user_cache_dir() == tmp_path / "home" / ".cache" / "fideval"


def test_resolution_order(tmp_path, monkeypatch, isolated):
    env_dir, cache, hub = (
        tmp_path / "env",
        tmp_path / "xdg" / "fideval",
        W.torch_hub_checkpoint_dir(),
    )
    monkeypatch.setenv("FIDEVAL_WEIGHTS_DIR", str(env_dir))
    p_hub = _put(hub)
    assert _resolve().path == p_hub and _resolve().found_in == "torch hub"
    p_cache = _put(cache)
    assert _resolve().path == p_cache and _resolve().found_in == "user cache"
    p_env = _put(env_dir)
    got = _resolve()
    assert got.path == p_env and got.found_in == "FIDEVAL_WEIGHTS_DIR"
    assert got.official and got.sha256 == hashlib.sha256(CONTENT).hexdigest()
    explicit = _put(tmp_path / "mine", "whatever.pth")
    got = _resolve(path=explicit)
    assert got.path == explicit and got.found_in == "explicit" and got.official
    assert isolated.calls == []  # nothing was downloaded


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(FidevalError, match="does not exist"):
        _resolve(path=tmp_path / "nope.pth")


def test_explicit_file_with_other_hash_warns_and_is_recorded(tmp_path):
    other = _put(tmp_path, "finetuned.pth", b"other weights")
    with pytest.warns(UserWarning, match="not comparable with published FID"):
        got = _resolve(path=other)
    assert not got.official
    assert got.sha256 == hashlib.sha256(b"other weights").hexdigest()


def test_cached_file_with_wrong_hash_is_an_error(tmp_path):
    bad = _put(tmp_path / "xdg" / "fideval", content=b"truncated")
    with pytest.raises(FidevalError) as err:
        _resolve()
    msg = str(err.value)
    assert str(bad) in msg and PREFIX in msg and "--weights" in msg


def test_offline_error_names_file_url_and_folders(tmp_path, isolated):
    with pytest.raises(FidevalError) as err:
        W.resolve_weights()
    msg = str(err.value)
    assert W.FID_WEIGHTS_NAME in msg
    assert W.FID_WEIGHTS_URL in msg
    assert str(tmp_path / "xdg" / "fideval") in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    assert "FIDEVAL_WEIGHTS_DIR" in msg and "--weights" in msg
    assert isolated.calls == [W.FID_WEIGHTS_URL]
    assert not (tmp_path / "xdg" / "fideval" / W.FID_WEIGHTS_NAME).exists()


def test_offline_switch_does_not_touch_the_network(monkeypatch, isolated):
    monkeypatch.setenv("FIDEVAL_OFFLINE", "1")
    with pytest.raises(FidevalError, match="downloads are off"):
        _resolve()
    with pytest.raises(FidevalError, match=NAME):
        _resolve(download=False)
    assert isolated.calls == []


def _serve(monkeypatch, payload):
    calls = []

    def opener(url, timeout=None):
        calls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(W, "_urlopen", opener)
    return calls


def test_download_verifies_and_writes_atomically(tmp_path, monkeypatch):
    calls = _serve(monkeypatch, CONTENT)
    got = _resolve()
    target = tmp_path / "xdg" / "fideval" / NAME
    assert calls == ["https://example.invalid/" + NAME]
    assert got.path == target and got.found_in == "download" and got.official
    assert target.read_bytes() == CONTENT
    assert sorted(os.listdir(target.parent)) == [NAME]  # no temp file left
    assert _resolve().found_in == "user cache"  # found next time, no second download
    assert len(calls) == 1


def test_download_goes_to_env_folder_when_set(tmp_path, monkeypatch):
    _serve(monkeypatch, CONTENT)
    monkeypatch.setenv("FIDEVAL_WEIGHTS_DIR", str(tmp_path / "env"))
    assert _resolve().path == tmp_path / "env" / NAME


def test_download_with_wrong_hash_writes_nothing(tmp_path, monkeypatch):
    _serve(monkeypatch, b"an html error page")
    with pytest.raises(FidevalError, match=f"expected {PREFIX}"):
        _resolve()
    folder = tmp_path / "xdg" / "fideval"
    assert not folder.exists() or os.listdir(folder) == []


def test_download_of_the_real_name_from_a_local_file(tmp_path, monkeypatch):
    """The default URL and name, served from a local file through the opener."""
    local = tmp_path / "served.pth"
    local.write_bytes(b"x")

    def opener(url, timeout=None):
        assert url == W.FID_WEIGHTS_URL
        return open(local, "rb")

    monkeypatch.setattr(W, "_urlopen", opener)
    with pytest.raises(FidevalError, match="6726825d"):  # b"x" is not the real file
        W.resolve_weights()


def test_load_state_dict_weights_only(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"a": torch.ones(2)}, good)
    assert torch.equal(W.load_state_dict(good)["a"], torch.ones(2))
    evil = tmp_path / "evil.pth"
    torch.save({"a": _Unsafe()}, evil)  # arbitrary objects are refused
    with pytest.raises(FidevalError, match=r"evil\.pth"):
        W.load_state_dict(evil)
    not_dict = tmp_path / "tensor.pth"
    torch.save(torch.ones(2), not_dict)
    with pytest.raises(FidevalError, match="not a state dict"):
        W.load_state_dict(not_dict)


class _Unsafe:
    pass


def test_sha256_memo_sees_changes(tmp_path):
    p = _put(tmp_path, "f.bin", b"one")
    assert W.sha256_file(p) == hashlib.sha256(b"one").hexdigest()
    p.write_bytes(b"two!")
    assert W.sha256_file(p) == hashlib.sha256(b"two!").hexdigest()
