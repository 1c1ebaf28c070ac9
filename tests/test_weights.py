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
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.delenv("FIDEVAL_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("DNNLIB_CACHE_DIR", raising=False)
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


# --------------------------------------------------------------------------- other tools' folders


def test_extra_dirs_come_last_and_the_inception_lookup_is_unchanged(tmp_path):
    assert [label for label, _ in W.search_dirs()] == ["user cache", "torch hub"]
    edm2 = W.dnnlib_checkpoint_dir()
    assert edm2 == tmp_path / "home" / ".cache" / "dnnlib" / "torch_hub" / "checkpoints"
    assert W.clip_cache_dir() == tmp_path / "home" / ".cache" / "clip"
    assert W.scenic_clip_cache_dir() == tmp_path / "home" / ".cache" / "scenic" / "clip"
    dirs = W.search_dirs([("EDM2", edm2), ("torch hub again", W.torch_hub_checkpoint_dir())])
    assert [label for label, _ in dirs] == ["user cache", "torch hub", "EDM2"]  # no duplicate
    p = _put(edm2)
    got = _resolve(extra_dirs=[("EDM2", edm2)])
    assert got.path == p and got.found_in == "EDM2" and got.official
    with pytest.raises(FidevalError, match="downloads are off"):
        _resolve(download=False)  # without extra_dirs the EDM2 folder is not searched


def test_dnnlib_cache_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "dnn"))
    assert W.dnnlib_checkpoint_dir() == tmp_path / "dnn" / "torch_hub" / "checkpoints"


def test_unknown_hash_is_used_as_found_and_recorded(tmp_path, isolated):
    """DINOv2: no published hash; the file's own SHA-256 identifies it."""
    edm2 = W.dnnlib_checkpoint_dir()
    p = _put(edm2, "dinov2_vitl14_pretrain.pth", b"some dinov2 bytes")
    kw = dict(
        name="dinov2_vitl14_pretrain.pth",
        url="https://example.invalid/d.pth",
        sha256_prefix=None,
        extra_dirs=[("EDM2", edm2)],
    )
    got = W.resolve_weights(**kw)
    assert got.path == p and got.official is None
    assert got.sha256 == hashlib.sha256(b"some dinov2 bytes").hexdigest()
    other = _put(tmp_path / "mine", "x.pth", b"other")
    with warnings_none():
        got = W.resolve_weights(other, **kw)  # explicit: no warning (nothing to compare)
    assert got.official is None and got.found_in == "explicit"
    p.unlink()
    with pytest.raises(FidevalError) as err:
        W.resolve_weights(download=False, **kw)
    assert str(edm2) in str(err.value) and "https://example.invalid/d.pth" in str(err.value)
    assert isolated.calls == []


def test_download_with_unknown_hash(tmp_path, monkeypatch):
    calls = _serve(monkeypatch, b"payload")
    got = W.resolve_weights(name="f.pth", url="https://example.invalid/f.pth", sha256_prefix=None)
    assert calls == ["https://example.invalid/f.pth"] and got.official is None
    assert got.path.read_bytes() == b"payload" and got.found_in == "download"


def test_purpose_names_the_scores_in_the_warning(tmp_path):
    other = _put(tmp_path, "mine.pt", b"other weights")
    with pytest.warns(UserWarning, match="published CMMD values"):
        _resolve(path=other, purpose="CMMD")


class warnings_none:
    """Context manager: fail if any warning is emitted."""

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


# --------------------------------------------------------------------------- load errors


@pytest.mark.parametrize(
    "content,match",
    [
        (b"<html><body>404 Not Found</body></html>", "is not a PyTorch weights file"),
        (b"", "is not a PyTorch weights file"),
        (b"PK\x03\x04 truncated zip", "is not a PyTorch weights file"),
    ],
)
def test_load_state_dict_of_a_non_torch_file_is_one_line(tmp_path, content, match):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(FidevalError, match=match) as err:
        W.load_state_dict(path)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg and "\x1b" not in msg and len(msg) < 400


def test_load_state_dict_refusing_objects_is_one_line_and_names_the_global(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"a": _Unsafe()}, evil)
    with pytest.raises(FidevalError) as err:
        W.load_state_dict(evil)
    msg = str(err.value)
    assert str(evil) in msg and "_Unsafe" in msg and "weights_only" in msg and "\n" not in msg


def test_load_state_dict_of_a_torchscript_archive_says_so(tmp_path):
    import warnings

    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)), str(path))
    with pytest.raises(FidevalError, match="TorchScript archive") as err:
        W.load_state_dict(path)
    assert "\n" not in str(err.value) and W.is_torchscript_archive(path)


def test_read_torchscript_tensors_matches_the_archive(tmp_path):
    import warnings

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
            self.scale = torch.nn.Parameter(torch.arange(4.0).half())
            self.register_buffer("count", torch.tensor([7], dtype=torch.int64))

        def forward(self, x):
            return self.inner(x) * self.scale.float() + self.count

    path = tmp_path / "net.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(Net().eval(), torch.zeros(2, 3))
        traced.save(str(path))
        want = traced.state_dict()
    got = W.read_torchscript_tensors(path)
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v), k
    not_zip = tmp_path / "plain.pth"
    torch.save({"a": torch.ones(1)}, not_zip)  # a zip, but no TorchScript module tree
    with pytest.raises(FidevalError, match="TorchScript"):
        W.read_torchscript_tensors(not_zip)


def test_state_dict_sha256_identifies_tensors():
    a = {"w": torch.ones(2, 3), "b": torch.zeros(3)}
    same = {"b": torch.zeros(3), "w": torch.ones(2, 3)}
    assert W.state_dict_sha256(a) == W.state_dict_sha256(same)  # order does not matter
    assert W.state_dict_sha256(a) != W.state_dict_sha256({**a, "b": torch.zeros(3).double()})
    assert W.state_dict_sha256(a) != W.state_dict_sha256({**a, "w": torch.ones(3, 2)})
    assert W.state_dict_sha256(a) != W.state_dict_sha256({**a, "w": torch.ones(2, 3) * 2})
    with pytest.raises(FidevalError, match="'n'"):
        W.state_dict_sha256({"n": 3})
