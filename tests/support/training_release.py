"""A tiny release directory on real photos (scikit-image's bundled images) with hand-made COCO
boxes, in the release layout (:mod:`labelloop.release.layout`): what the fine-tuning tests train
and evaluate on without running the whole loop."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image

from support.helpers import skimage_data

CATEGORIES = ["person", "cat", "cup"]
#: hand-made boxes, COCO xywh pixels of the original photo
HANDMADE: dict[str, list[tuple[str, list[float]]]] = {
    "astronaut.png": [("person", [19.0, 15.0, 344.0, 497.0])],
    "chelsea.png": [("cat", [40.0, 20.0, 360.0, 275.0])],
    "coffee.png": [("cup", [60.0, 20.0, 500.0, 330.0])],
    "camera.png": [("person", [150.0, 40.0, 250.0, 430.0])],
}


def write_release(dest: Path, split: str = "train", photos: dict | None = None, copies: int = 1) -> Path:
    """Write ``images/<split>/`` and ``annotations/instances_<split>.json`` under ``dest``.

    ``copies`` > 1 adds mirrored / cropped variants of each photo (boxes transformed to match),
    so a split of ``4 * copies`` distinct images can be built from the four photos.
    """
    photos = photos or HANDMADE
    images_dir = dest / "images" / split
    images_dir.mkdir(parents=True, exist_ok=True)
    cats = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(CATEGORIES)]
    images, anns = [], []
    for name, boxes in sorted(photos.items()):
        src = skimage_data() / name
        base = Image.open(src).convert("RGB")
        for c in range(copies):
            im, bxs = base, [(cat, list(b)) for cat, b in boxes]
            if c % 2 == 1:  # mirror
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                bxs = [(cat, [im.width - b[0] - b[2], b[1], b[2], b[3]]) for cat, b in bxs]
            shift = 8 * (c // 2)
            if shift:  # crop the top-left corner away
                im = im.crop((shift, shift, im.width, im.height))
                bxs = [(cat, [max(b[0] - shift, 0.0), max(b[1] - shift, 0.0), b[2], b[3]]) for cat, b in bxs]
            file_name = f"{Path(name).stem}-{c}.png"
            if c == 0 and src.suffix == ".png" and base.mode == Image.open(src).mode:
                shutil.copyfile(src, images_dir / file_name)
            else:
                im.save(images_dir / file_name)
            img_id = len(images) + 1
            images.append({"id": img_id, "file_name": file_name, "width": im.width, "height": im.height})
            for cat, b in bxs:
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": CATEGORIES.index(cat) + 1,
                             "bbox": b, "area": b[2] * b[3], "iscrowd": 0})
    (dest / "annotations").mkdir(parents=True, exist_ok=True)
    (dest / "annotations" / f"instances_{split}.json").write_text(
        json.dumps({"info": {}, "images": images, "annotations": anns, "categories": cats}), encoding="utf-8")
    return dest
