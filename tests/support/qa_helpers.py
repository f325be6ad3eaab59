"""Test helpers for QA: reviews derived from the hand-made labels (labelloop/data/demo_review.json).

``review_variant`` writes a Label Studio JSON export of the same 12 photos as another reviewer
would have made it, with every box passed through ``change`` (which may return None to drop it);
``degrade`` is a degraded review: boxes in turn dropped, shifted by half their size
(right and down), or given another class.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from labelloop.formats import labelstudio
from labelloop.images import samples

CLASSES = ["person", "face", "cat"]


def shift_half(value: dict) -> dict:
    """The rectangle moved right and down by half its width and height (percent units), kept
    inside the image by shrinking it at the far edge."""
    v = dict(value)
    v["x"] = v["x"] + v["width"] / 2
    v["y"] = v["y"] + v["height"] / 2
    v["width"] = min(v["width"], 100.0 - v["x"])
    v["height"] = min(v["height"], 100.0 - v["y"])
    return v


def degrade(k: int, region: dict) -> dict | None:
    """Box number ``k`` (in file order): k % 3 == 0 dropped, 1 shifted by half its size, 2 swapped class."""
    if k % 3 == 0:
        return None
    r = copy.deepcopy(region)
    if k % 3 == 1:
        r["value"] = shift_half(r["value"])
    else:
        cls = r["value"]["rectanglelabels"][0]
        r["value"]["rectanglelabels"] = [CLASSES[(CLASSES.index(cls) + 1) % len(CLASSES)]]
    return r


def jitter(k: int, region: dict) -> dict:
    """The box moved by 1% of its size (IoU about 0.96): a careful second reviewer."""
    r = copy.deepcopy(region)
    r["value"]["x"] += r["value"]["width"] * 0.01
    r["value"]["width"] *= 0.99
    return r


def review_variant(dest: Path, annotator: int, change, updated_at: str = "2026-11-21T10:00:00.000000Z",
                   id_offset: int = 1000) -> Path:
    """A copy of the hand-made review by user ``annotator`` (new annotation ids, ``updated_at``),
    every region passed through ``change(k, region)`` (k counts regions across the file)."""
    tasks = json.loads(samples.demo_review_path().read_text(encoding="utf-8"))
    k = 0
    for t in tasks:
        for a in t["annotations"]:
            a["id"] = a["id"] + id_offset
            a["completed_by"] = annotator
            a["updated_by"] = annotator
            a["updated_at"] = updated_at
            out = []
            for r in a["result"]:
                new = change(k, r)
                k += 1
                if new is not None:
                    new["id"] = f"{new['id']}-{annotator}"
                    out.append(new)
            a["result"] = out
            a["result_count"] = len(out)
    dest.write_text(json.dumps(tasks, indent=1), encoding="utf-8")
    return dest


def gold_photos() -> list[dict]:
    """The 12 photos of the hand-made review: size and gold boxes (xyxy pixels)."""
    out = []
    for rec in labelstudio.read_export(samples.demo_review_path()):
        name = labelstudio.image_ref_path(rec["image_ref"]).rsplit("/", 1)[-1]
        w = h = None
        boxes = []
        for r in rec["regions"]:
            w, h = r["original_width"], r["original_height"]
            boxes.append((r["category"], labelstudio.region_bbox(r)))
        out.append({"name": name, "w": w, "h": h, "boxes": boxes})
    return out
