"""Images/s of fideval's ViT extractors against their reference implementations, one run.

Same seeded random weights loaded into both; float32 on the CPU; the network on
already-preprocessed input (preprocessing excluded on both sides), best of R passes
after a full-batch warm-up. Prints images/s, the ratio, and the largest feature
difference. ``--compiled`` also times fideval's network with ``compile=True``
(``torch.compile``, inductor freezing on the CPU) in steady state, against the same eager
reference, and prints its compile time (first call) separately.

* ``dinov2-vitb14`` / ``dinov2-vitl14`` vs timm's ``vit_{base,large}_patch14_dinov2``
  (position embedding pre-resized by the hub rule for timm);
* ``clip-vitl14-336`` vs open_clip's ``ViT-L-14-336-quickgelu`` ``encode_image``.

    pip install timm open-clip-torch
    python benchmarks/bench_extractors.py [--batch 8] [--repeats 2] [--which all] [--compiled]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torch.nn.functional as F

from fideval.features.clip import CLIPExtractor
from fideval.features.clip import seeded_random_state_dict as clip_state
from fideval.features.dinov2 import DINOv2Extractor, resize_pos_embed
from fideval.features.dinov2 import seeded_random_state_dict as dino_state


def best_of(fn, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def report(name: str, n: int, t_ref: float, t_ours: float, diff: float) -> None:
    print(f"{name}: batch {n}, {torch.get_num_threads()} threads")
    print(f"  reference  {n / t_ref:8.2f} images/s")
    print(f"  fideval    {n / t_ours:8.2f} images/s")
    print(f"  ratio      {t_ref / t_ours:8.2f}x   max |feature difference| {diff:.2g}")


def report_compiled(make, pre: torch.Tensor, t_ref: float, eager: torch.Tensor, repeats: int):
    """fideval with compile=True: compile time (first call), then steady state."""
    ours = make().set_compile(True)
    t = time.perf_counter()
    ours.features(pre)
    compile_s = time.perf_counter() - t
    t_c, f_c = best_of(lambda: ours.features(pre), repeats)
    n = pre.shape[0]
    diff = float((f_c - eager).abs().max())
    print(f"  compiled   {n / t_c:8.2f} images/s  (compile + first batch {compile_s:.0f} s)")
    print(f"  ratio      {t_ref / t_c:8.2f}x   max |compiled - eager| {diff:.2g}")


def bench_dinov2(arch: str, batch: int, repeats: int, compiled: bool = False) -> None:
    import timm

    state = dino_state(arch, seed=0)

    def make() -> DINOv2Extractor:
        return DINOv2Extractor(arch, weights=state, device="cpu")

    ours = make()
    name = {"vitl14": "vit_large_patch14_dinov2", "vitb14": "vit_base_patch14_dinov2"}[arch]
    with torch.device("meta"):
        ref = timm.create_model(name, pretrained=False, num_classes=0, img_size=224)
    ref_state = {k: v for k, v in state.items() if k != "mask_token"}
    ref_state["pos_embed"] = resize_pos_embed(state["pos_embed"], 16, 16)
    ref.load_state_dict(ref_state, strict=True, assign=True)
    ref.eval()
    x = torch.randint(
        0, 256, (batch, 3, 224, 224), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    pre = ours.preprocess(x)
    with torch.inference_mode():
        ref(pre), ours.features(pre)  # warm-up
        t_ref, f_ref = best_of(lambda: ref(pre), repeats)
        t_ours, f_ours = best_of(lambda: ours.features(pre), repeats)
    report(f"dinov2-{arch}", batch, t_ref, t_ours, float((f_ref - f_ours).abs().max()))
    if compiled:
        report_compiled(make, pre, t_ref, f_ours, repeats)


def bench_clip(batch: int, repeats: int, compiled: bool = False) -> None:
    import open_clip

    state = clip_state(seed=0, prefix="visual.")

    def make() -> CLIPExtractor:
        return CLIPExtractor(weights=state, device="cpu")

    ours = make()
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        ref = open_clip.create_model("ViT-L-14-336-quickgelu", pretrained=None, device="meta")
    ref.visual.load_state_dict({k[7:]: v for k, v in state.items()}, strict=True, assign=True)
    ref.eval()
    x = torch.randint(
        0, 256, (batch, 3, 336, 336), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    pre = ours.preprocess(x)
    with torch.inference_mode():
        F.normalize(ref.encode_image(pre), dim=-1), ours.features(pre)  # warm-up
        t_ref, f_ref = best_of(lambda: F.normalize(ref.encode_image(pre), dim=-1), repeats)
        t_ours, f_ours = best_of(lambda: ours.features(pre), repeats)
    report("clip-vitl14-336", batch, t_ref, t_ours, float((f_ref - f_ours).abs().max()))
    if compiled:
        report_compiled(make, pre, t_ref, f_ours, repeats)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--which", choices=("all", "dinov2-vitb14", "dinov2-vitl14", "clip"), default="all"
    )
    ap.add_argument("--compiled", action="store_true", help="also time compile=True")
    args = ap.parse_args()
    if args.which in ("all", "dinov2-vitb14"):
        bench_dinov2("vitb14", args.batch, args.repeats, args.compiled)
    if args.which in ("all", "dinov2-vitl14"):
        bench_dinov2("vitl14", args.batch, args.repeats, args.compiled)
    if args.which in ("all", "clip"):
        bench_clip(args.batch, args.repeats, args.compiled)


if __name__ == "__main__":
    main()
