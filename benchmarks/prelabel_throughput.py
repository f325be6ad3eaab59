"""Throughput of the ``prelabels`` stage (Grounding DINO + SAM) against the raw model forward
passes on the same tensors, and against a naive one-image-at-a-time loop, in one process.

    python benchmarks/prelabel_throughput.py --device cpu --num-images 4 --arch vit_b

Models: full-size architectures with random weights (their cost does not depend on the weights'
values), written once under ``--work-dir`` in the real formats and loaded through the same
checkpoint path as production (sha256 checked): Grounding DINO tiny (Swin-T + BERT-base, 900
queries, 800 / 1333 input) via transformers, SAM ``--arch`` (vit_b / vit_l / vit_h) via
segment-anything, or with ``--segmenter sam-hq`` SAM-HQ with that ViT, or ``--segmenter sam2``
SAM 2 Hiera-L (``--arch`` ignored), via transformers. SAM's image encoder uses the config's
default attention (``sdpa``: fused ``scaled_dot_product_attention`` with the relative-position
bias) unless ``--attention eager`` (segment-anything's own; ``--segmenter sam`` only);
``--compile`` wraps it in ``torch.compile`` (``segmenter.compile``; the stage and the raw pass
both call the compiled encoder, and the warm-up batch pays the compilation). Images:
real photos shipped in scikit-image, matplotlib and scikit-learn, cycled to ``--num-images`` files.

Three figures, images per second over the same N images after one warm-up batch:
- stage: ``FoundationPreLabeler.predict_files`` + prediction rows as an Arrow table, i.e. decode
  (DataLoader workers) -> detector -> SAM encoder on images with mask boxes -> one decoder call per
  image -> masks to COCO RLE -> rows.
- raw: only the model forward passes on the already-decoded, already-batched device tensors:
  the detector forward per batch, SAM's image encoder on the same images, the mask decoder on the
  boxes the stage found (one call per image), synchronised at the end.
- naive: the pattern of popular auto-labeling tools: per image, decode in the loop, float32, the
  detector called once per prompt, SAM's encoder on the image, the decoder once per box.

On a CPU it also prints the CPU seconds (this process and its joined DataLoader workers) of
the stage and of the raw passes, and their ratio: the work done, which a shared machine's
scheduling does not distort as it does wall time.

``--backend sam3``: SAM 3 alone (``prelabeler.backend: sam3``), facebook/sam3's full-size
architecture (``Sam3Config()`` defaults, about 848M parameters, 1008-pixel input) with random
weights, the same three figures: stage = ``Sam3PreLabeler.predict_files`` + rows; raw = the
model passes on the same batched tensors (``get_vision_features`` once per batch, then the
DETR encoder / decoder and mask decoder once per category); naive = per image and per prompt,
float32, the vision features recomputed for every prompt, masks upsampled per instance.
(``--arch``, ``--segmenter``, ``--attention`` and ``--compile`` do not apply.)

Ends with ``stage/raw X.XX  stage/naive Y.YY  stage_img_per_s Z.Z``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # tests/support: the random-weight checkpoints

from labelloop import tables  # noqa: E402
from labelloop.images.files import load_rgb  # noqa: E402
from labelloop.prelabel.backends.foundation import FoundationPreLabeler  # noqa: E402
from labelloop.prelabel.backends.loading import sha256_path  # noqa: E402
from labelloop.prelabel.backends.pipeline import batch_of_images, image_row  # noqa: E402
from labelloop.prelabel.backends.runtime import autocast_dtype, resolve_device  # noqa: E402
from labelloop.prelabel.backends.sam3 import Sam3PreLabeler  # noqa: E402
from labelloop.tables.schemas import PREDICTIONS  # noqa: E402
from labelloop.workspace.config import ProjectConfig  # noqa: E402
from support.random_weights import write_grounding_dino, write_sam, write_sam2, write_sam3, write_sam_hq  # noqa: E402

CATEGORIES = [("person", "a person", True), ("cat", "a cat", True), ("face", "a human face", False)]


def photos() -> list[Path]:
    import matplotlib
    import skimage
    import sklearn

    sk = Path(skimage.__file__).parent / "data"
    return [sk / "astronaut.png", sk / "chelsea.png", sk / "coffee.png", sk / "rocket.jpg",
            Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
            Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg",
            Path(sklearn.__file__).parent / "datasets" / "images" / "flower.jpg"]


def checkpoints(work: Path, arch: str, segmenter: str = "sam") -> tuple[Path, str, Path, str]:
    gd = work / "grounding-dino-tiny-random"
    if not (gd / "model.safetensors").is_file():
        shutil.rmtree(gd, ignore_errors=True)
        write_grounding_dino(gd, [p for _, p, _ in CATEGORIES], size="tiny")
    if segmenter == "sam":
        sam = work / f"sam_{arch}_random.pth"
        if not sam.is_file():
            write_sam(sam, arch)
    else:
        size = arch if segmenter == "sam-hq" else "hiera_large"
        sam = work / f"{segmenter}_{size}_random"
        if not (sam / "model.safetensors").is_file():
            shutil.rmtree(sam, ignore_errors=True)
            (write_sam_hq if segmenter == "sam-hq" else write_sam2)(sam, size)
    return gd, sha256_path(gd), sam, sha256_path(sam)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (the DataLoader
    workers are joined when a stage's loop ends): on a shared CPU machine the ratio of these is
    the work done, unaffected by how much of a core the scheduler gave the process."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stage(m: FoundationPreLabeler, paths: list[Path]) -> tuple[float, list]:
    t = time.perf_counter()
    results = list(m.predict_files(paths))
    rows = [{"image_id": str(i), "category": d.category, "bbox": list(d.bbox), "score": d.score, "mask": d.mask,
             "model_id": m.model_id, "checkpoint_sha256": m.checkpoint_sha256, "prompt": d.prompt}
            for i, dets in results for d in dets]
    tables.to_table(rows, PREDICTIONS)
    return time.perf_counter() - t, results


def raw(m: FoundationPreLabeler, paths: list[Path], results: list, batch_size: int) -> tuple[float, float]:
    det, seg = m.load()
    dev = det.device
    images = [load_rgb(p) for p in paths]
    batches = [batch_of_images(images[i:i + batch_size], m.prepare()).to(dev, non_blocking=False)
               for i in range(0, len(images), batch_size)]
    masked = [torch.tensor([d.bbox for d in dets if d.mask is not None], dtype=torch.float32, device=dev).reshape(-1, 4)
              for _, dets in results]  # the boxes the stage segmented, per image
    sync(dev)
    t, c = time.perf_counter(), cpu_seconds()
    for k, b in enumerate(batches):
        det.forward(b.det)
        rows = [i for i in range(len(b)) if len(masked[k * batch_size + i])]
        if seg is not None and rows:
            emb = seg.encode({key: v[rows] for key, v in b.seg.items()})
            for j, i in enumerate(rows):
                seg.decode_logits(image_row(emb, j), masked[k * batch_size + i], b.sizes[i])
    sync(dev)
    return time.perf_counter() - t, cpu_seconds() - c


def naive(m: FoundationPreLabeler, paths: list[Path]) -> float:
    det, seg = m.load()
    dev = det.device
    amp = (det.amp, seg.amp if seg else None)
    det.amp = None
    if seg:
        seg.amp = None
    single = [det.encode_prompts([p]) for _, p, _ in m.categories]
    prepare = m.prepare()
    try:
        sync(dev)
        t = time.perf_counter()
        for p in paths:
            b = batch_of_images([load_rgb(p)], prepare).to(dev, non_blocking=False)
            boxes = []
            for c, text in enumerate(single):
                if not m.categories[c][2]:
                    det.detect(b.det, b.sizes, text)
                    continue
                boxes.append(det.detect(b.det, b.sizes, text)[0].xyxy)
            if seg is not None:
                emb = seg.encode(b.seg)
                size = tuple(b.seg["input_sizes"][0].tolist())
                for xyxy in boxes:
                    for box in xyxy:
                        seg.masks(image_row(emb, 0), box[None], size, b.sizes[0])
        sync(dev)
        return time.perf_counter() - t
    finally:
        det.amp = amp[0]
        if seg:
            seg.amp = amp[1]


def sam3_checkpoint(work: Path, size: str = "full") -> tuple[Path, str]:
    path = work / f"sam3-{size}-random"
    if not (path / "model.safetensors").is_file() and not (path / "model.safetensors.index.json").is_file():
        shutil.rmtree(path, ignore_errors=True)
        write_sam3(path, [p for _, p, _ in CATEGORIES], size=size)
    return path, sha256_path(path)


def sam3_raw(m: Sam3PreLabeler, paths: list[Path], batch_size: int) -> tuple[float, float]:
    """The SAM 3 forward passes alone on already-batched device tensors: vision once per batch,
    the prompt passes once per category."""
    model, _ = m.load()
    dev = model.device
    images = [load_rgb(p) for p in paths]
    batches = [batch_of_images(images[i:i + batch_size], m.prepare()).to(dev, non_blocking=False)
               for i in range(0, len(images), batch_size)]
    sync(dev)
    t, c = time.perf_counter(), cpu_seconds()
    for b in batches:
        vision = model.vision(b.det["pixel_values"])
        for cat in range(len(m.categories)):
            model.prompt(vision, cat, len(b))
    sync(dev)
    return time.perf_counter() - t, cpu_seconds() - c


def sam3_naive(m: Sam3PreLabeler, paths: list[Path]) -> float:
    """Per image, per prompt: decode, float32, vision features recomputed, prompt pass,
    post-processing, one mask upsampled at a time."""
    model, _ = m.load()
    dev, amp = model.device, model.amp
    model.amp = None
    prepare = m.prepare()
    try:
        sync(dev)
        t = time.perf_counter()
        for p in paths:
            b = batch_of_images([load_rgb(p)], prepare).to(dev, non_blocking=False)
            for cat, (_, _, masks) in enumerate(m.categories):
                vision = model.vision(b.det["pixel_values"])
                inst = model.postprocess(model.prompt(vision, cat, 1), cat, b.sizes)[0]
                if masks:
                    for k in range(len(inst.mask_logits)):
                        model.masks(inst.mask_logits[k:k + 1], b.sizes[0])
        sync(dev)
        return time.perf_counter() - t
    finally:
        model.amp = amp


def main_sam3(a: argparse.Namespace, dev: torch.device) -> int:
    t = time.perf_counter()
    path, sha = sam3_checkpoint(a.work_dir, a.sam3_size)
    print(f"checkpoint ready in {time.perf_counter() - t:.1f}s: {path} ({sha[:12]})")
    cfg = ProjectConfig.model_validate({
        "categories": [{"name": n, "detector": "sam3", "prompt": p, "masks": mk} for n, p, mk in CATEGORIES],
        "prelabeler": {"backend": "sam3", "device": str(dev), "dtype": a.dtype, "batch_size": a.batch_size,
                       "num_workers": a.num_workers,
                       "sam3": {"path": str(path), "sha256": sha, "max_detections": a.max_detections,
                                "score_threshold": 0.0}}})
    m = Sam3PreLabeler(cfg)
    t = time.perf_counter()
    m.load()
    print(f"loaded in {time.perf_counter() - t:.1f}s on {dev} "
          f"(autocast {autocast_dtype(dev, a.dtype)}, torch {torch.__version__}, {torch.get_num_threads()} threads)")
    pool = photos()
    paths = [pool[i % len(pool)] for i in range(a.num_images)]
    warmup = a.batch_size if a.warmup is None else a.warmup
    if warmup:
        stage(m, [pool[i % len(pool)] for i in range(warmup)])
    c0 = cpu_seconds()
    s_time, results = stage(m, paths)
    s_cpu = cpu_seconds() - c0
    r_time, r_cpu = sam3_raw(m, paths, m.halving.batch_size)
    return report(a, dev, m, results, len(paths), (s_time, s_cpu), (r_time, r_cpu), lambda: sam3_naive(m, paths))



def report(a, dev, m, results, n: int, stage_t: tuple[float, float], raw_t: tuple[float, float], run_naive) -> int:
    """Print the figures of one run (same lines for every backend): counts, stage / raw / naive
    images per second (wall clock), CPU seconds on a CPU, and the last line with the ratios."""
    s_time, s_cpu = stage_t
    r_time, r_cpu = raw_t
    n_boxes = sum(len(r) for _, r in results if isinstance(r, list))
    n_masks = sum(d.mask is not None for _, r in results if isinstance(r, list) for d in r)
    print(f"images {n}  boxes {n_boxes}  masks {n_masks}  batch_size {m.halving.batch_size}  "
          f"oom_halvings {len(m.halving.events)}")
    print(f"stage  {n / s_time:8.3f} img/s  ({s_time:.2f} s)")
    print(f"raw    {n / r_time:8.3f} img/s  ({r_time:.2f} s)")
    if dev.type == "cpu":
        print(f"cpu seconds: stage {s_cpu:.1f}  raw {r_cpu:.1f}  cpu stage/raw {r_cpu / s_cpu:.2f} "
              "(work done, whatever share of the cores the scheduler gave)")
    if a.skip_naive:
        nv_time = float("nan")
        print("naive  skipped")
    else:
        nv_time = run_naive()
        print(f"naive  {n / nv_time:8.3f} img/s  ({nv_time:.2f} s; {nv_time / n:.2f} s per image)")
    ips = n / s_time
    ips_text = f"{ips:.1f}" if ips >= 1 else f"{ips:.4f}"  # a CPU run is far below 1 img/s
    print(f"stage/raw {r_time / s_time:.2f}  stage/naive {nv_time / s_time:.2f}  stage_img_per_s {ips_text}")
    return 0

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default)")
    ap.add_argument("--backend", default="foundation", choices=["foundation", "sam3"],
                    help="foundation (Grounding DINO + a segmenter) or sam3 (SAM 3 alone, full size)")
    ap.add_argument("--num-images", type=int, default=8)
    ap.add_argument("--arch", default="vit_h", choices=["vit_b", "vit_l", "vit_h"], help="SAM / SAM-HQ architecture")
    ap.add_argument("--segmenter", default="sam", choices=["sam", "sam-hq", "sam2"],
                    help="sam (segment-anything), sam-hq or sam2 (Hiera-L) through transformers")
    ap.add_argument("--attention", default=None, choices=["sdpa", "eager"],
                    help="SAM image-encoder attention (--segmenter sam only; default: the config default, sdpa)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile SAM's image encoder (segmenter.compile; --segmenter sam only)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "labelloop-bench",
                    help="where the random-weight checkpoints are written once and reused")
    ap.add_argument("--max-detections", type=int, default=20,
                    help="boxes kept per image (random weights pass the thresholds everywhere; 20 ~ a busy photo)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="images run through the stage before timing (default: one full batch, so the timed "
                         "run meets no new batch shape the raw pass, run after it, would find warmed up)")
    ap.add_argument("--sam3-size", default="full", choices=["full", "test"],
                    help="--backend sam3: full (facebook/sam3's architecture) or test (the tiny smoke-test model)")
    ap.add_argument("--skip-naive", action="store_true", help="leave out the naive loop (slow on a CPU)")
    a = ap.parse_args(argv)
    if (a.attention or a.compile) and a.segmenter != "sam":
        ap.error("--attention and --compile apply to --segmenter sam only")
    dev = resolve_device(a.device)
    a.work_dir.mkdir(parents=True, exist_ok=True)
    if a.backend == "sam3":
        return main_sam3(a, dev)
    t = time.perf_counter()
    gd, gd_sha, sam, sam_sha = checkpoints(a.work_dir, a.arch, a.segmenter)
    print(f"checkpoints ready in {time.perf_counter() - t:.1f}s: {gd} ({gd_sha[:12]}), {sam} ({sam_sha[:12]})")
    cfg = ProjectConfig.model_validate({
        "categories": [{"name": n, "detector": "grounding-dino", "prompt": p, "masks": mk} for n, p, mk in CATEGORIES],
        "prelabeler": {"backend": "foundation", "device": str(dev), "dtype": a.dtype, "batch_size": a.batch_size,
                       "num_workers": a.num_workers,
                       "detector": {"path": str(gd), "sha256": gd_sha, "max_detections": a.max_detections},
                       "segmenter": {"kind": a.segmenter, "path": str(sam), "sha256": sam_sha,
                                     **({"arch": a.arch} if a.segmenter == "sam" else {}),
                                     **({"attention": a.attention} if a.attention else {}),
                                     **({"compile": True} if a.compile else {})}}})
    m = FoundationPreLabeler(cfg)
    t = time.perf_counter()
    m.load()
    seg = cfg.prelabeler.segmenter
    attention = (f", SAM attention {seg.attention}{', compiled' if seg.compile else ''}"
                 if a.segmenter == "sam" else "")
    print(f"loaded in {time.perf_counter() - t:.1f}s on {dev} "
          f"(autocast {autocast_dtype(dev, a.dtype)}, torch {torch.__version__}, {torch.get_num_threads()} threads"
          f"{attention})")
    pool = photos()
    paths = [pool[i % len(pool)] for i in range(a.num_images)]
    warmup = a.batch_size if a.warmup is None else a.warmup
    if warmup:
        stage(m, [pool[i % len(pool)] for i in range(warmup)])  # warm-up: allocator, kernels, workers
    c0 = cpu_seconds()
    s_time, results = stage(m, paths)
    c1 = cpu_seconds()
    r_time, r_cpu = raw(m, paths, results, m.halving.batch_size)
    return report(a, dev, m, results, len(paths), (s_time, c1 - c0), (r_time, r_cpu), lambda: naive(m, paths))


if __name__ == "__main__":
    raise SystemExit(main())
