"""SAM image-encoder forward time, segment-anything's eager attention against SDPA with the fused
relative-position bias (labelloop.prelabel.backends.sam_attention), in one process on the same model and
inputs:

    python benchmarks/sam_attention.py --device cpu --arch vit_b --batch-sizes 1 2 --repeats 3 --threads 2

The model is the full-size architecture with random weights (random relative-position tables too,
so the bias is not zero; the cost does not depend on the values). The two kinds alternate
(eager, sdpa, eager, sdpa...) so a shared machine's load changes hit both alike; one untimed
forward of each first. Per batch size it prints, per kind, the best and median seconds per image
(wall) and the CPU seconds per image of the best run, the sdpa/eager speed-up of the medians, and
the max |sdpa - eager| of the encoder outputs (float32 unless ``--dtype bfloat16``).
``--compile`` adds ``torch.compile`` of the SDPA encoder (its compile time is printed first).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labelloop.prelabel.backends.runtime import autocast, resolve_device  # noqa: E402
from labelloop.prelabel.backends.sam import build_sam  # noqa: E402
from labelloop.prelabel.backends.sam_attention import set_attention  # noqa: E402


def forward(encoder, x, device, amp) -> tuple[torch.Tensor, float, float]:
    """(output, wall s, process CPU s) of one encoder forward."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t, c = time.perf_counter(), time.process_time()
    with torch.inference_mode(), autocast(device, amp):
        out = encoder(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t, time.process_time() - c


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    ap.add_argument("--arch", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3, help="timed forwards of each kind per batch size")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="autocast dtype (float32 = none)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the SDPA encoder")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    amp = None if a.dtype == "float32" else getattr(torch, a.dtype)
    torch.manual_seed(0)
    sam = build_sam(a.arch)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if "rel_pos" in name:
                p.normal_(0, 0.5)
    encoder = sam.image_encoder.to(dev)
    kinds = {"eager": encoder, "sdpa": encoder}
    print(f"{a.arch} on {dev}, autocast {amp}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    if a.compile:
        set_attention(encoder, "sdpa")
        compiled = torch.compile(encoder)
        _, t, _ = forward(compiled, torch.randn(a.batch_sizes[0], 3, encoder.img_size, encoder.img_size, device=dev),
                          dev, amp)
        print(f"torch.compile: first call (compile + run) {t:.1f} s")
        kinds["sdpa+compile"] = compiled
    results = {}
    for bs in a.batch_sizes:
        x = torch.randn(bs, 3, encoder.img_size, encoder.img_size, device=dev)
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
        outs = {}
        for rep in range(a.repeats + 1):
            for kind, enc in kinds.items():
                set_attention(encoder, kind.split("+")[0])
                out, t, c = forward(enc, x, dev, amp)
                if rep == 0:
                    outs[kind] = out.float()
                else:
                    times[kind].append((t, c))
        diff = (outs["sdpa"] - outs["eager"]).abs().max().item()
        if "sdpa+compile" in outs:
            print(f"batch {bs}  max |sdpa+compile - eager| {(outs['sdpa+compile'] - outs['eager']).abs().max().item():.2e}")
        row = {}
        for kind, tc in times.items():
            walls = [t for t, _ in tc]
            best = min(tc)
            row[kind] = {"best_s_per_image": best[0] / bs, "median_s_per_image": statistics.median(walls) / bs,
                         "cpu_s_per_image": best[1] / bs}
            print(f"batch {bs}  {kind:13s} best {best[0] / bs:7.2f} s/img  median {statistics.median(walls) / bs:7.2f}"
                  f" s/img  cpu {best[1] / bs:7.2f} s/img  ({len(walls)} runs)")
        speedup = row["eager"]["median_s_per_image"] / row["sdpa"]["median_s_per_image"]
        print(f"batch {bs}  sdpa speed-up x{speedup:.2f} (medians)  max |sdpa - eager| {diff:.2e} "
              f"(max |eager| {outs['eager'].abs().max().item():.2f})")
        results[bs] = {**row, "speedup": speedup, "max_abs_diff": diff}
    return results


if __name__ == "__main__":
    main()
