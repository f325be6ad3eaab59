"""Training throughput of the ``detector_training`` loop against a bare training loop of the same
model, batch and precision, in one process (issue #18).

    python benchmarks/train_throughput.py --arch tiny --image-size 320 --num-images 16 --epochs 3

Data: the bundled real photos (:func:`labelloop.images.samples.bundled_photos`) cycled to
``--num-images`` files of a release's train split, each with one box of the centre half of the
image (the cost of a step does not depend on where the boxes are). Model: RT-DETRv2 with random
weights, ``--arch tiny`` (:func:`labelloop.training.detector.tiny_config`) or ``default``
(``RTDetrV2Config()``, ResNet-50-vd).

Two figures, training images per second after one warm-up step of each:
- loop: :func:`labelloop.training.loop.train_detector`, what the asset runs: decode and resize
  each batch, forward + backward + AdamW step, the atomic checkpoint after every epoch, the final
  ``save_pretrained``.
- bare: the same model (same seed), batches, optimizer, gradient clipping and precision
  (autocast bfloat16 on CUDA only) on batches decoded once beforehand: forward + backward + step only.

Ends with ``loop/bare X.XX  loop_img_per_s Y.Y  bare_img_per_s Z.Z`` (target loop/bare >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from labelloop.images.samples import bundled_photos
from labelloop.training.data import read_split
from labelloop.training.detector import build_model
from labelloop.training.loop import batches, make_batch, resolve_device, train_step
from labelloop.workspace.config import Training


def write_split(dest: Path, n: int) -> Path:
    """A release folder with a train split of ``n`` photos (cycled), one centre box each."""
    photos = bundled_photos()
    (dest / "images" / "train").mkdir(parents=True)
    images, anns = [], []
    for i in range(n):
        with Image.open(photos[i % len(photos)]) as im:
            rgb = im.convert("RGB")
        name = f"{i:05d}.png"
        rgb.save(dest / "images" / "train" / name)
        w, h = rgb.size
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [w / 4, h / 4, w / 2, h / 2],
                     "area": w * h / 4, "iscrowd": 0})
    (dest / "annotations").mkdir()
    (dest / "annotations" / "instances_train.json").write_text(json.dumps(
        {"images": images, "annotations": anns,
         "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "cat"}]}))
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=["tiny", "default"], default="tiny")
    ap.add_argument("--image-size", type=int, default=320)
    ap.add_argument("--num-images", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="train-throughput-"))
    try:
        split = read_split(write_split(work / "release", args.num_images), "train")
        settings = Training(architecture=args.arch, image_size=args.image_size, batch_size=args.batch_size,
                            epochs=args.epochs, device=args.device)
        device = resolve_device(settings.device)
        # bare: batches decoded beforehand, forward + backward + step only
        model = build_model(split.categories, None, settings.architecture, settings.seed).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
        ready = [make_batch(b, settings.image_size, device) for e in range(1, settings.epochs + 1)
                 for b in batches(split.examples, settings.batch_size, settings.seed, e)]
        train_step(model, opt, *ready[0], device, settings.max_grad_norm)  # warm-up
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        sync()
        t = time.perf_counter()
        for pixels, targets in ready:
            train_step(model, opt, pixels, targets, device, settings.max_grad_norm)
        sync()
        bare = sum(len(tg) for _, tg in ready) / (time.perf_counter() - t)
        # loop: what the asset runs (its own warm-up: one step on a throw-away run)
        train_detector_warm = Training(**{**settings.model_dump(), "epochs": 1})
        from labelloop.training.loop import train_detector

        train_detector(split.__class__(split.categories, split.examples[:settings.batch_size], split.coco,
                                       split.source), train_detector_warm, work / "warm")
        result = train_detector(split, settings, work / "run")
        loop = result.images_per_second
        print(f"device {device}  arch {args.arch}  image_size {args.image_size}  images {args.num_images}  "
              f"batch {args.batch_size}  epochs {args.epochs}  threads {torch.get_num_threads()}")
        print(f"loop/bare {loop / bare:.2f}  loop_img_per_s {loop:.1f}  bare_img_per_s {bare:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
