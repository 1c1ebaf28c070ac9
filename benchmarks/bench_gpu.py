"""One run of every GPU figure: networks, the Fréchet step, streaming statistics, end to end.

On a CUDA device (default ``--device cuda``) it measures, each against its anchor in the
same run, and prints the ratio:

1. images/s of the FID Inception (vs pytorch-fid's ``InceptionV3``; torch-fidelity and
   torchmetrics' ``FeatureExtractorInceptionV3`` when installed), DINOv2 ViT-L/14 (vs
   timm) and CLIP ViT-L/14@336 (vs open_clip), with the same seeded random weights
   (the published files cannot be downloaded here), eager and ``compile=True``;
2. the Fréchet step at d = 2048: fideval on the device vs torchmetrics' ``eigvals`` route
   on the device (reimplemented when torchmetrics is absent) and pytorch-fid's
   ``scipy.linalg.sqrtm`` on the CPU;
3. streaming float64 statistics of float32 features on the device vs a raw GEMM XᵀX;
4. ``fideval fid`` end to end on ``--n-images`` (50 000) images: from uint8 tensors in
   memory, and from a folder of PNGs read by DataLoader workers (whole process).

``--device cpu --quick`` runs everything small on the CPU in seconds (a smoke test).
Run::

    python benchmarks/bench_gpu.py                       # on a CUDA machine
    python benchmarks/bench_gpu.py --device cpu --quick  # smoke test
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import fideval


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeat: int = 1) -> float:
    fn()  # warm-up (and compilation)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / repeat


def _row(what: str, ours: float, anchor: float | None, anchor_name: str, unit: str) -> None:
    if anchor is None:
        print(f"{what:<44} fideval {ours:10.2f} {unit}   {anchor_name}: not installed")
        return
    better = ours / anchor if unit.endswith("/s") else anchor / ours
    print(
        f"{what:<44} fideval {ours:10.2f} {unit}   {anchor_name} {anchor:10.2f} {unit}   "
        f"ratio {better:5.2f}x"
    )


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# --------------------------------------------------------------------------- networks


def bench_inception(device: torch.device, batch: int, reps: int, tmp: Path, quick: bool) -> None:
    from fideval.features.inception import seeded_random_state_dict

    state = seeded_random_state_dict(0)
    weights = tmp / "inception.pth"
    torch.save(state, weights)
    x = torch.rand(batch, 3, 299, 299, device=device) * 2 - 1
    anchor = None
    if _has("pytorch_fid"):
        import pytorch_fid.inception as pfi

        pfi.load_state_dict_from_url = lambda *a, **k: state
        ref = pfi.InceptionV3([3]).eval().to(device)
        with torch.no_grad():
            anchor = batch / _timed(lambda: ref((x + 1) / 2), device, reps)
    for mode in (False,) if quick else (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ext = fideval.extractor("inception", weights=weights, device=device, compile=mode)
        ours = batch / _timed(lambda e=ext: e.features(x), device, reps)
        _row(f"Inception, batch {batch}, compile={mode}", ours, anchor, "pytorch-fid", "img/s")


def bench_vits(device: torch.device, batch: int, reps: int, quick: bool) -> None:
    from fideval.features.clip import seeded_random_state_dict as clip_state
    from fideval.features.dinov2 import seeded_random_state_dict as dino_state

    arch = "vitb14" if quick else "vitl14"
    dino = fideval.extractor(f"dinov2-{arch}", weights=dino_state(arch, seed=1), device=device)
    x = torch.rand(batch, 3, 224, 224, device=device)
    anchor = None
    if _has("timm"):
        import timm

        name = {"vitb14": "vit_base_patch14_dinov2", "vitl14": "vit_large_patch14_dinov2"}[arch]
        ref = timm.create_model(name, pretrained=False, img_size=224, num_classes=0).eval()
        ref = ref.to(device)
        with torch.inference_mode():
            anchor = batch / _timed(lambda: ref(x), device, reps)
    ours = batch / _timed(lambda: dino.features(x), device, reps)
    _row(f"DINOv2 {arch}, batch {batch}", ours, anchor, "timm", "img/s")
    if quick:
        return
    clip = fideval.extractor(
        "clip-vitl14-336", weights=clip_state(seed=2, prefix="visual."), device=device
    )
    xc = torch.rand(batch, 3, 336, 336, device=device)
    anchor = None
    if _has("open_clip"):
        import open_clip

        ref = open_clip.create_model("ViT-L-14-336-quickgelu", pretrained=None).visual
        ref = ref.eval().to(device)
        with torch.inference_mode():
            anchor = batch / _timed(lambda: ref(xc), device, reps)
    ours = batch / _timed(lambda: clip.features(xc), device, reps)
    _row(f"CLIP ViT-L/14@336, batch {batch}", ours, anchor, "open_clip", "img/s")


# --------------------------------------------------------------------------- Fréchet


def _spd(rng: np.random.Generator, d: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)
    return x.mean(0), np.cov(x, rowvar=False)


def bench_frechet(device: torch.device, d: int, n: int) -> None:
    rng = np.random.default_rng(0)
    (m1, s1), (m2, s2) = _spd(rng, d, n), _spd(rng, d, n)
    on = [torch.as_tensor(a, device=device) for a in (m1, s1, m2, s2)]
    ours = _timed(lambda: fideval.frechet_details(*on, n1=n, n2=n), device)

    def eigvals_route() -> float:  # torchmetrics' FID: eigvals of Σ1Σ2 on the device
        a = torch.as_tensor(s1, device=device)
        b = torch.as_tensor(s2, device=device)
        return float(torch.linalg.eigvals(a @ b).sqrt().real.sum())

    _row(
        f"Fréchet d={d} N={n} (device)",
        ours,
        _timed(eigvals_route, device),
        "eigvals(Σ1Σ2) on device",
        "s",
    )
    if _has("scipy"):
        from scipy import linalg

        cpu = _timed(lambda: linalg.sqrtm(s1 @ s2), torch.device("cpu"))
        _row(f"Fréchet d={d} N={n} vs CPU sqrtm", ours, cpu, "pytorch-fid sqrtm (CPU)", "s")


def bench_statistics(device: torch.device, n: int, d: int) -> None:
    feats = torch.randn(n, d, device=device)

    def ours() -> None:
        s = fideval.GaussianStats(device=device)
        for chunk in feats.split(4096):
            s.update(chunk)
        s.cov_tensor  # noqa: B018 - force the result

    def gemm() -> None:
        (feats.T.double() @ feats.double()).sum()

    _row(
        f"statistics of {n}×{d} float32 (device)",
        _timed(ours, device),
        _timed(gemm, device),
        "raw float64 GEMM XᵀX",
        "s",
    )


# --------------------------------------------------------------------------- end to end


def bench_end_to_end(device: torch.device, n: int, tmp: Path, size: int) -> None:
    from PIL import Image

    from fideval.features.inception import seeded_random_state_dict

    weights = tmp / "inception.pth"
    if not weights.exists():
        torch.save(seeded_random_state_dict(0), weights)
    rng = np.random.default_rng(0)
    imgs = torch.from_numpy(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))
    ref = rng.standard_normal((200, 2048))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ext = fideval.extractor("inception", weights=weights, device=device)
        t0 = time.perf_counter()
        fideval.fid(imgs.permute(0, 3, 1, 2), ref, extractor=ext, batch_size=200)
        _sync(device)
    tensors = time.perf_counter() - t0
    print(
        f"{'fideval.fid, ' + str(n) + ' uint8 tensors':<44} {tensors:10.1f} s  "
        f"({n / tensors:.0f} img/s)"
    )
    folder = tmp / "pngs"
    folder.mkdir(exist_ok=True)
    for i, img in enumerate(imgs.numpy()):
        Image.fromarray(img).save(folder / f"{i:06d}.png")
    np.save(tmp / "ref.npy", ref.astype(np.float32))
    cmd = [
        sys.executable,
        "-m",
        "fideval",
        "fid",
        str(folder),
        str(tmp / "ref.npy"),
        "--weights",
        str(weights),
        "--device",
        str(device),
        "--batch-size",
        "200",
        "--no-progress",
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    whole = time.perf_counter() - t0
    print(f"{'fideval fid FOLDER (whole process)':<44} {whole:10.1f} s  ({n / whole:.0f} img/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    ap.add_argument("--n-images", type=int, default=50_000)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device here; use --device cpu --quick for a smoke test")
    torch.backends.cuda.matmul.allow_tf32 = False  # fideval's statistics never use TF32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; fideval {fideval.__version__}")
    quick = args.quick
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        bench_inception(device, 4 if quick else 200, 1 if quick else 5, tmp, quick)
        bench_vits(device, 2 if quick else 64, 1 if quick else 5, quick)
        bench_frechet(device, 64 if quick else 2048, 200 if quick else 10_000)
        bench_statistics(device, 2_000 if quick else 200_000, 64 if quick else 2048)
        bench_end_to_end(device, 8 if quick else args.n_images, tmp, 16 if quick else 32)


if __name__ == "__main__":
    main()
