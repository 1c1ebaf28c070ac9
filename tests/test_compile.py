"""torch.compile of the extractors' networks: equal features within float32 round-off,
``auto`` compiles only large jobs, and a failing compiler falls back with one warning."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import fideval
from fideval.features import compiled


def _net() -> nn.Module:
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return net


def _images() -> torch.Tensor:
    return torch.randint(
        0, 256, (6, 3, 12, 12), generator=torch.Generator().manual_seed(1), dtype=torch.uint8
    )


@pytest.mark.slow
def test_compiled_features_equal_eager_within_float32_round_off():
    eager = fideval.extractor(_net(), compile=False)
    comp = fideval.extractor(_net(), compile=True)
    want, got = eager(_images()), comp(_images())
    assert not comp._runner.failed and comp._runner.compiled is not None
    assert (got - want).abs().max().item() <= 64 * 2.0**-24 * want.abs().max().item()


def test_auto_compiles_only_jobs_that_pay(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda net, **kw: calls.append(kw) or net)
    ext = fideval.extractor(_net())  # compile="auto" is the default
    ext.prepare(compiled.AUTO_MIN_IMAGES["cpu"] - 1)
    assert calls == []
    fideval.streaming.collect(_images(), ext)  # 6 images: not worth compiling
    assert calls == []
    ext.prepare(compiled.AUTO_MIN_IMAGES["cpu"])
    assert calls == [{"dynamic": False, "options": {"freezing": True}}]


def test_a_failing_compiler_falls_back_with_one_warning(monkeypatch):
    def broken(net, **kw):
        def run(*a, **k):
            raise RuntimeError("Compiler: cc not found\nsecond line")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    eager = fideval.extractor(_net(), compile=False)
    comp = fideval.extractor(_net(), compile=True)
    with pytest.warns(RuntimeWarning) as caught:
        got = comp(_images())
        again = comp(_images())
    assert len(caught) == 1
    assert "torch.compile is not available here (RuntimeError: Compiler: cc not found second" in (
        str(caught[0].message)
    )
    assert torch.equal(got, eager(_images())) and torch.equal(again, got)


def test_compile_flag_and_option_are_checked(capsys):
    from fideval.errors import FidevalError

    with pytest.raises(FidevalError, match="compile must be 'auto', True or False"):
        fideval.extractor(_net(), compile="sometimes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert fideval.extractor("digits", compile=False)._runner.mode is False


@pytest.mark.slow
def test_compiled_inception_equals_eager_within_float32_round_off(tmp_path):
    from helpers import inception_weights

    weights = inception_weights(tmp_path / "w.pth")
    images = torch.randint(
        0, 256, (2, 3, 64, 64), generator=torch.Generator().manual_seed(2), dtype=torch.uint8
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the non-standard weights warning
        eager = fideval.extractor("inception", weights=weights, device="cpu", compile=False)
        comp = fideval.extractor("inception", weights=weights, device="cpu", compile=True)
    want = eager(images)
    got = comp(images)
    assert not comp._runner.failed and comp._runner.compiled is not None
    assert (got - want).abs().max().item() <= 64 * 2.0**-24 * want.abs().max().item()
