"""Images/s of fideval's FID Inception vs pytorch-fid's, CPU, same weights, batch 50.

Two measurements on the same 32x32 PNGs (upscaled to 299 by both):

* network alone: pytorch-fid's ``InceptionV3([3])`` as shipped (``torch.no_grad``,
  contiguous layout) vs :class:`fideval.features.inception.InceptionExtractor`
  (``inference_mode``, channels_last on the CPU), on the same prepared batches;
  the maximum feature difference is printed too;
* whole command, start-up included, as subprocesses:
  ``fideval stats FOLDER -o x.npz --weights W`` vs
  ``python -m pytorch_fid --save-stats FOLDER y.npz``.

pytorch-fid's weights cannot be downloaded here, so both use the same seeded
random weights: pytorch-fid finds them in its torch hub cache (``TORCH_HOME``
points to a temporary folder holding the file under the official name), fideval
gets them with ``--weights``. Run::

    python benchmarks/bench_inception.py            # 200 images, 2 network batches
    python benchmarks/bench_inception.py --n-images 100 --net-batches 1
    python benchmarks/bench_inception.py --compiled --skip-command   # + compile=True
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import fideval
from fideval.features.inception import InceptionExtractor, seeded_random_state_dict
from fideval.features.preprocess import preprocess_batch
from fideval.io.weights import FID_WEIGHTS_NAME


def make_pngs(folder: Path, n: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.png")


def bench_network(
    weights: Path, folder: Path, batch: int, n_batches: int, compiled: bool = False
) -> None:
    import pytorch_fid.inception as pfi

    pfi.load_state_dict_from_url = lambda *a, **k: torch.load(weights, weights_only=True)
    ref = pfi.InceptionV3([3]).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = InceptionExtractor(2048, weights=weights, device="cpu")

    files = sorted(folder.glob("*.png"))[: batch * n_batches]
    imgs = torch.stack(
        [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]
    )
    x01 = imgs.float() / 255  # what pytorch-fid's ToTensor gives
    batches = [x01[i * batch : (i + 1) * batch] for i in range(n_batches)]
    prepared = [preprocess_batch(b, "pytorch-fid") for b in batches]

    def run_ref() -> torch.Tensor:
        outs = []
        for b in batches:
            with torch.no_grad():  # pytorch-fid resizes and scales inside its forward
                outs.append(ref(b)[0].squeeze(3).squeeze(2))
        return torch.cat(outs)

    def run_ours() -> torch.Tensor:
        return torch.cat([ours.features(p) for p in prepared])

    # Warm-up with a full batch each: steady-state throughput, not primitive creation
    # (oneDNN builds kernels per input shape on first use).
    with torch.no_grad():
        ref(batches[0])
    ours.features(prepared[0])
    t0 = time.perf_counter()
    f_ref = run_ref()
    t1 = time.perf_counter()
    f_ours = run_ours()
    t2 = time.perf_counter()
    t_ref, t_ours = t1 - t0, t2 - t1
    n = batch * n_batches
    x_direct = 2 * F.interpolate(batches[0], size=(299, 299), mode="bilinear") - 1
    assert torch.equal(prepared[0], x_direct)
    print(f"network alone, batch {batch}, {n} images, {torch.get_num_threads()} threads:")
    print(f"  pytorch-fid (as shipped)        {n / t_ref:7.2f} images/s")
    print(f"  fideval (channels_last, inf.)   {n / t_ours:7.2f} images/s")
    print(f"  ratio                           {t_ref / t_ours:7.2f}x")
    print(f"  max |feature difference|        {(f_ours - f_ref).abs().max().item():.3g}")
    if not compiled:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comp = fideval.extractor("inception", weights=weights, device="cpu", compile=True)
    t0 = time.perf_counter()
    comp.features(prepared[0])  # compiles (or loads the cached compiled code)
    t_compile = time.perf_counter() - t0
    comp.features(prepared[0])
    t0 = time.perf_counter()
    f_comp = torch.cat([comp.features(p) for p in prepared])
    t_comp = time.perf_counter() - t0
    print(
        f"  fideval compile=True            {n / t_comp:7.2f} images/s (compile {t_compile:.0f} s)"
    )
    print(f"  ratio compiled / pytorch-fid    {t_ref / t_comp:7.2f}x")
    print(f"  max |compiled − eager|          {(f_comp - f_ours).abs().max().item():.3g}")


def bench_command(
    weights: Path, folder: Path, tmp: Path, batch: int, compile_flag: str = "auto"
) -> None:
    n = len(list(folder.glob("*.png")))
    hub = tmp / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    official_name = hub / FID_WEIGHTS_NAME
    if not official_name.exists():
        official_name.write_bytes(weights.read_bytes())
    # Cold compile cache: fideval compiles from scratch, as on a user's first run.
    env = dict(
        os.environ,
        TORCH_HOME=str(tmp / "torch_home"),
        TORCHINDUCTOR_CACHE_DIR=str(tmp / "inductor"),
        PYTHONWARNINGS="ignore",
    )
    fideval_cmd = [
        sys.executable,
        "-m",
        "fideval",
        "stats",
        str(folder),
        "-o",
        str(tmp / "x.npz"),
        "--weights",
        str(weights),
        "--batch-size",
        str(batch),
        "--no-progress",
        "--compile",
        compile_flag,
    ]
    pfid_cmd = [
        sys.executable,
        "-m",
        "pytorch_fid",
        "--save-stats",
        "--batch-size",
        str(batch),
        "--device",
        "cpu",
        str(folder),
        str(tmp / "y.npz"),
    ]
    times = {}
    for out in (tmp / "x.npz", tmp / "y.npz"):
        out.unlink(missing_ok=True)
    for name, cmd in (("pytorch-fid", pfid_cmd), ("fideval", fideval_cmd)):
        t0 = time.perf_counter()
        subprocess.run(
            cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        times[name] = time.perf_counter() - t0
    with np.load(tmp / "x.npz") as a, np.load(tmp / "y.npz") as b:
        dmu = np.abs(a["mu"] - b["mu"]).max()
        dsig = np.abs(a["sigma"] - b["sigma"]).max()
    print(f"whole command, {n} images, batch {batch}, start-up included:")
    print("  " + " ".join(pfid_cmd[2:]).replace(str(tmp), "$TMP"))
    print(
        f"  pytorch-fid   {times['pytorch-fid']:7.1f} s  {n / times['pytorch-fid']:6.2f} images/s"
    )
    print("  " + " ".join(fideval_cmd[2:]).replace(str(tmp), "$TMP"))
    print(f"  fideval       {times['fideval']:7.1f} s  {n / times['fideval']:6.2f} images/s")
    print(f"  ratio         {times['pytorch-fid'] / times['fideval']:7.2f}x")
    print(f"  max |mu difference| {dmu:.3g}, max |sigma difference| {dsig:.3g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=200, help="images for the command (200)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--net-batches", type=int, default=2, help="batches for the network alone")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--skip-command", action="store_true")
    ap.add_argument("--compiled", action="store_true", help="also time compile=True")
    ap.add_argument(
        "--compile",
        default="auto",
        choices=("auto", "on", "off"),
        help="fideval stats --compile for the whole command (default auto)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        weights = tmp / "random-fid-inception.pth"
        torch.save(seeded_random_state_dict(0), weights)
        folder = tmp / "pngs"
        make_pngs(folder, max(args.n_images, args.batch_size * args.net_batches))
        bench_network(weights, folder, args.batch_size, args.net_batches, args.compiled)
        if not args.skip_command:
            cmd_folder = tmp / "cmd_pngs"
            make_pngs(cmd_folder, args.n_images, seed=1)
            bench_command(weights, cmd_folder, tmp, args.batch_size, args.compile)
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
