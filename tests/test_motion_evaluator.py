"""The text-to-motion evaluator: parity with the original's embeddings, loading, input checks."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import fideval.motion
from fideval.errors import FidevalError
from fideval.io.weights import sha256_file
from fideval.motion.evaluator import random_checkpoint

DATA = Path(__file__).parent / "data" / "t2m"
SPEC = json.loads((DATA / "t2m_parity.json").read_text())
TOL = 1e-5


def recipe_checkpoint(dataset: str) -> dict:
    """The fixture's weights, built from its own recipe and key list (not from fideval)."""
    seed = SPEC["seed"]
    ckpt: dict = {"epoch": 7, "opt_text_encoder": {"state": {}, "param_groups": []}}
    for module, keys in SPEC["datasets"][dataset]["state_dict_keys"].items():
        state = {}
        for key, shape in keys:
            g = torch.Generator().manual_seed(zlib.crc32(f"{module}.{key}".encode()) + 1000 * seed)
            scale = 1 / math.sqrt(math.prod(shape[1:])) if len(shape) >= 2 else 0.1
            w = torch.randn(shape, generator=g, dtype=torch.float32) * scale
            if key == "output_net.1.weight":
                w = w + 1
            state[key] = w
        ckpt[module] = state
    return ckpt


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small GRU batches: one thread is faster than several on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=["humanml", "kit"])
def case(request):
    ds = request.param
    z = dict(np.load(DATA / f"t2m_parity_{ds}.npz"))
    ev = fideval.motion.T2MEvaluator.from_checkpoint(recipe_checkpoint(ds), dataset=ds)
    return ds, ev, z


def test_parity_input_order(case):
    _, ev, z = case
    text = ev.text_embeddings(z["word_embs"], z["pos_onehot"], z["cap_lens"])
    motion = ev.motion_embeddings(z["motions"], z["m_lens"])
    assert text.shape == (len(z["cap_lens"]), 512) and text.dtype == torch.float32
    assert motion.shape == (len(z["m_lens"]), 512) and motion.dtype == torch.float32
    np.testing.assert_allclose(text.numpy(), z["text_embedding"], rtol=0, atol=TOL)
    np.testing.assert_allclose(motion.numpy(), z["motion_embedding"], rtol=0, atol=TOL)
    # The fixture's motion lengths are not sorted: input order is kept.
    assert not np.all(np.diff(z["m_lens"]) <= 0)


def test_parity_permuted_rows(case):
    _, ev, z = case
    perm = np.random.default_rng(3).permutation(len(z["cap_lens"]))
    text = ev.text_embeddings(
        torch.from_numpy(z["word_embs"][perm]),
        torch.from_numpy(z["pos_onehot"][perm]),
        torch.from_numpy(z["cap_lens"][perm]),
    )
    motion = ev.motion_embeddings(z["motions"][perm], z["m_lens"][perm])
    np.testing.assert_allclose(text.numpy(), z["text_embedding"][perm], rtol=0, atol=TOL)
    np.testing.assert_allclose(motion.numpy(), z["motion_embedding"][perm], rtol=0, atol=TOL)


def test_embedding_independent_of_batch(case):
    _, ev, z = case
    single = torch.cat(
        [ev.motion_embeddings(z["motions"][i : i + 1], z["m_lens"][i : i + 1]) for i in range(3)]
    )
    np.testing.assert_allclose(single.numpy(), z["motion_embedding"][:3], rtol=0, atol=TOL)


def test_zero_padding_convention(case):
    _, ev, z = case
    m, n = z["motions"].copy(), z["m_lens"]
    # Noise past each length is replaced by zeros (pad="zero"), whatever the padded length.
    noisy = m + np.random.default_rng(0).standard_normal(m.shape).astype(np.float32) * (
        np.arange(m.shape[1])[None, :, None] >= n[:, None, None]
    )
    got = ev.motion_embeddings(noisy, n)
    np.testing.assert_allclose(got.numpy(), z["motion_embedding"], rtol=0, atol=TOL)
    short = m[:, : int(n.max())]  # no frames past the longest motion
    np.testing.assert_allclose(
        ev.motion_embeddings(short, n).numpy(), z["motion_embedding"], rtol=0, atol=TOL
    )
    # pad="keep" feeds the frames as given: frames L..L+2 reach the last movement.
    kept = ev.motion_embeddings(noisy, n, pad="keep")
    assert float((kept - got).abs().max()) > 1e-3


def test_extractor_contract(case):
    ds, ev, _ = case
    assert isinstance(ev, torch.nn.Module)
    assert not ev.training and all(not m.training for m in ev.modules())
    with pytest.raises(RuntimeError, match="no train mode"):
        ev.train()
    assert ev.eval() is ev and not ev.training
    prov = ev.provenance()
    assert prov["extractor"] == ev.id == f"t2m-evaluator-{ds}"
    assert prov["dims"] == ev.dims == 512
    assert prov["weights_sha256"] == ev.weights_sha256 and len(ev.weights_sha256) == 64
    assert all(not p.requires_grad for p in ev.parameters())


def test_package_random_checkpoint_follows_recipe():
    mine, ref = random_checkpoint("kit", seed=0), recipe_checkpoint("kit")
    for module in ("movement_encoder", "text_encoder", "motion_encoder"):
        assert list(mine[module]) == [
            k for k, _ in SPEC["datasets"]["kit"]["state_dict_keys"][module]
        ]
        for key in mine[module]:
            assert torch.equal(mine[module][key], ref[module][key])


def test_load_file_and_hash(tmp_path):
    path = tmp_path / "finest.tar"
    torch.save(recipe_checkpoint("humanml"), path)
    ev = fideval.motion.T2MEvaluator.from_checkpoint(path, dataset="humanml")
    assert ev.weights_sha256 == sha256_file(path)
    z = np.load(DATA / "t2m_parity_humanml.npz")
    got = ev.text_embeddings(z["word_embs"][:2], z["pos_onehot"][:2], z["cap_lens"][:2])
    np.testing.assert_allclose(got.numpy(), z["text_embedding"][:2], rtol=0, atol=TOL)
    # The same tensors from a dict hash the same way whatever else the dict holds.
    a = fideval.motion.T2MEvaluator.from_checkpoint(recipe_checkpoint("humanml"))
    ck = recipe_checkpoint("humanml")
    ck["epoch"] = 99
    assert fideval.motion.T2MEvaluator.from_checkpoint(ck).weights_sha256 == a.weights_sha256


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_weights_only_refusal_names_file(tmp_path):
    path = tmp_path / "finest.tar"
    ck = recipe_checkpoint("kit")
    ck["opt"] = _Evil()
    torch.save(ck, path)
    with pytest.raises(FidevalError, match=r"finest\.tar.*weights_only=True.*refused"):
        fideval.motion.T2MEvaluator.from_checkpoint(path, dataset="kit")
    with pytest.raises(FidevalError, match="does not exist"):
        fideval.motion.T2MEvaluator.from_checkpoint(tmp_path / "nope.tar")


def test_missing_and_wrong_keys():
    ck = recipe_checkpoint("humanml")
    del ck["text_encoder"]["gru.bias_hh_l0_reverse"]
    with pytest.raises(FidevalError, match=r"missing key text_encoder\.gru\.bias_hh_l0_reverse"):
        fideval.motion.T2MEvaluator.from_checkpoint(ck)
    ck = recipe_checkpoint("humanml")
    ck["motion_encoder"]["extra.weight"] = torch.zeros(3)
    with pytest.raises(FidevalError, match=r"unexpected key motion_encoder\.extra\.weight"):
        fideval.motion.T2MEvaluator.from_checkpoint(ck)
    ck = recipe_checkpoint("humanml")
    del ck["movement_encoder"]
    with pytest.raises(FidevalError, match="no movement_encoder"):
        fideval.motion.T2MEvaluator.from_checkpoint(ck)
    with pytest.raises(FidevalError, match=r"movement_encoder\.main\.0\.weight.*dataset='kit'"):
        fideval.motion.T2MEvaluator.from_checkpoint(recipe_checkpoint("kit"), dataset="humanml")
    with pytest.raises(FidevalError, match="unknown text-to-motion dataset"):
        fideval.motion.T2MEvaluator.from_checkpoint(recipe_checkpoint("kit"), dataset="babel")


def test_bad_inputs_named(case):
    _, ev, z = case
    width = z["motions"].shape[2]
    with pytest.raises(FidevalError, match=rf"motions: width {width + 1}.*takes {width}"):
        ev.motion_embeddings(np.zeros((2, 196, width + 1), np.float32), [40, 40])
    with pytest.raises(FidevalError, match=r"m_lens\[1\] = 3 frames is under the minimum 4"):
        ev.motion_embeddings(z["motions"][:2], [40, 3])
    with pytest.raises(FidevalError, match=r"m_lens\[0\] = 200 frames is over the 196"):
        ev.motion_embeddings(z["motions"][:1], [200])
    with pytest.raises(FidevalError, match=r"cap_lens\[0\] = 0 tokens is under the minimum 1"):
        ev.text_embeddings(z["word_embs"][:1], z["pos_onehot"][:1], [0])
    with pytest.raises(FidevalError, match="pos_onehot"):
        ev.text_embeddings(z["word_embs"][:2], z["pos_onehot"][:1], [5, 5])
    bad = z["motions"][:1].copy()
    bad[0, 5, 5] = np.nan
    with pytest.raises(FidevalError, match=r"motions: NaN or Inf in rows \[0\]"):
        ev.motion_embeddings(bad, [40])
