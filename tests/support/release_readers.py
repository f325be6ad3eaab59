"""Read a labelloop release with datumaro and supervision and print what they found, as JSON.

Run by tests/integration/test_release_readers.py with the interpreter of ``.venv-readers`` (made by
scripts/test-services.sh: datumaro and supervision pin other pillow / pyarrow / pandas / opencv
than labelloop does), so it imports nothing from labelloop::

    .venv-readers/bin/python tests/support/release_readers.py RELEASE_DIR

Output: ``{"datumaro": {format: {subset: {...}}}, "supervision": {split: {...}}}`` where each
entry holds ``images``, ``objects`` by annotation type, ``missing_media`` (items whose image file
does not exist) and ``boxes`` (``file stem -> sorted [x, y, w, h]`` pixel boxes, 2 decimals).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections import Counter
from pathlib import Path


def _stem(path: str) -> str:
    return Path(path).stem


def datumaro_read(root: Path, fmt: str) -> dict:
    import datumaro as dm

    ds = dm.Dataset.import_from(str(root), fmt)
    out: dict = {}
    for item in ds:
        sub = out.setdefault(item.subset, {"images": 0, "objects": Counter(), "missing_media": 0, "boxes": {},
                                           "points": {}})
        sub["images"] += 1
        path = getattr(item.media, "path", None)
        if not path or not os.path.isfile(path):
            sub["missing_media"] += 1
        boxes = []
        for ann in item.annotations:
            sub["objects"][type(ann).__name__] += 1
            if isinstance(ann, dm.Bbox):
                boxes.append([round(float(v), 2) for v in ann.get_bbox()])
            elif isinstance(ann, dm.Points):
                sub["points"].setdefault(_stem(path or item.id), []).append([round(float(v), 2) for v in ann.points])
        sub["boxes"][_stem(path or item.id)] = sorted(boxes)
    for sub in out.values():
        sub["objects"] = dict(sub["objects"])
    return out


def supervision_read(root: Path) -> dict:
    import supervision as sv

    out = {}
    for split in ("train", "val", "test"):
        ann = root / "annotations" / f"instances_{split}.json"
        if not ann.is_file():
            continue
        ds = sv.DetectionDataset.from_coco(images_directory_path=str(root / "images" / split),
                                           annotations_path=str(ann))
        entry: dict = {"images": len(ds), "objects": 0, "missing_media": 0, "boxes": {}, "classes": list(ds.classes)}
        for i in range(len(ds)):
            path, image, det = ds[i]
            if image is None or not os.path.isfile(path):
                entry["missing_media"] += 1
            entry["objects"] += len(det)
            entry["boxes"][_stem(path)] = sorted(
                [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)]
                for x0, y0, x1, y1 in det.xyxy)
        out[split] = entry
    return out


def main(argv: list[str]) -> int:
    warnings.simplefilter("ignore")
    root = Path(argv[1])
    result: dict = {"datumaro": {}, "supervision": supervision_read(root)}
    # "yolo" detects the Ultralytics layout (data.yaml) itself; "yolo_ultralytics" is only its
    # sub-reader and refuses to be called directly
    for fmt in argv[2:] or ["coco_instances", "coco_person_keypoints", "yolo"]:
        try:
            result["datumaro"][fmt] = datumaro_read(root, fmt)
        except Exception as exc:  # noqa: BLE001 - reported to the test, which names the reader and format
            result["datumaro"][fmt] = {"error": f"{type(exc).__name__}: {exc}"}
    json.dump(result, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
