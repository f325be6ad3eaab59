"""Validation on write: every file of a release is read back and checked before it is accepted.

- ``coco/instances_<split>.json``: loads in pycocotools (``COCO(path)``); ids unique across all
  splits; every image file exists with the width and height the entry states; every annotation
  has a known image and category, a box inside its image, ``iscrowd`` 0 or 1 (1 only with RLE),
  a segmentation pycocotools can rasterize (``annToMask``) at the image's size, and for keypoint
  categories ``3 * K`` keypoint numbers with ``num_keypoints`` = points with v > 0.
- ``labels/<split>/*.txt``: one per image and no other, each valid for the layout
  (:func:`labelloop.formats.yolo.writer.check_label_text`: field count, class index, coordinates in [0, 1]).
- ``data.yaml``: names every split folder present, ``nc`` equal to the categories, ``kpt_shape``
  for pose; every listed folder exists.
- ``labels.parquet`` / ``lineage.parquet`` / ``images.parquet``: one row per COCO annotation /
  label / image.
- ``manifest.json`` (when present): every file listed with its sha256, and nothing else.

:func:`check_release` returns the problems (``"<file>: <problem>"``); :func:`validate_release`
raises :class:`ReleaseInvalid` with them, so a bad release never replaces the current one.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import json
from pathlib import Path

import yaml
from PIL import Image
from pycocotools.coco import COCO

from labelloop import tables
from labelloop.formats import yolo
from labelloop.geometry.boxes import box_problem, xywh_to_xyxy
from labelloop.release import shards
from labelloop.tables.schemas import LABELS, RELEASE_IMAGES, RELEASE_LINEAGE

SPLITS = ("train", "val", "test")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


class ReleaseInvalid(ValueError):
    """A written release failed its checks; ``problems`` lists them (file and problem each)."""

    def __init__(self, folder: Path, problems: list[str]):
        self.problems = problems
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"release files in {folder} failed validation: {'; '.join(problems[:5])}{more}")


def _check_coco(folder: Path, split: str, categories: list[str], seen: dict,
                members: dict[str, dict] | None = None) -> tuple[list[str], int, int]:

    rel = f"coco/instances_{split}.json"
    path = folder / rel
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(path))
    except Exception as exc:  # noqa: BLE001 - pycocotools raises bare assertions and KeyErrors
        return [f"{rel}: pycocotools cannot load it: {type(exc).__name__}: {exc}"], 0, 0
    problems = []
    cats = {c["id"]: c for c in gt.dataset.get("categories", [])}
    if [cats[k]["name"] for k in sorted(cats)] != list(categories):
        problems.append(f"{rel}: categories {[c['name'] for c in cats.values()]} differ from {list(categories)}")
    for img in gt.dataset.get("images", []):
        if img["id"] in seen["images"]:
            problems.append(f"{rel}: image id {img['id']} is also used in {seen['images'][img['id']]}")
        seen["images"][img["id"]] = rel
        f = folder / img["file_name"]
        member = (members or {}).get(img["file_name"])
        if member is not None:  # a tar member of shards/<split>/ (release.shard_mb)
            try:
                f = io.BytesIO(shards.read_member(folder / "shards" / split, member))
            except (OSError, ValueError) as exc:
                problems.append(f"{rel}: image {img['id']} file {img['file_name']!r}: {exc}")
                continue
        elif not f.resolve().is_relative_to(folder.resolve()) or not f.is_file():
            problems.append(f"{rel}: image {img['id']} file {img['file_name']!r} does not exist in the release")
            continue
        if not img["file_name"].startswith(f"images/{split}/"):
            problems.append(f"{rel}: image {img['id']} file {img['file_name']!r} is not under images/{split}/")
        try:
            with Image.open(f) as im:
                size = im.size
        except OSError as exc:
            problems.append(f"{img['file_name']}: cannot be read: {exc}")
            continue
        if size != (img["width"], img["height"]):
            problems.append(f"{img['file_name']}: is {size[0]}x{size[1]}, {rel} says {img['width']}x{img['height']}")
    for ann in gt.dataset.get("annotations", []):
        where = f"{rel}: annotation {ann.get('id')}"
        if ann["id"] in seen["annotations"]:
            problems.append(f"{where}: id also used in {seen['annotations'][ann['id']]}")
        seen["annotations"][ann["id"]] = rel
        img = gt.imgs.get(ann.get("image_id"))
        cat = cats.get(ann.get("category_id"))
        if img is None or cat is None:
            problems.append(f"{where}: unknown image or category id")
            continue
        problem = box_problem(xywh_to_xyxy(ann["bbox"]), img["width"], img["height"], tol=0.01)
        if problem:
            problems.append(f"{where}: {problem}")
        crowd = ann.get("iscrowd")
        if crowd not in (0, 1) or (crowd == 1 and not isinstance(ann.get("segmentation"), dict)):
            problems.append(f"{where}: iscrowd {crowd!r} (1 needs an RLE segmentation)")
        if ann.get("segmentation"):
            try:
                m = gt.annToMask(ann)
                if m.shape != (img["height"], img["width"]):
                    problems.append(f"{where}: segmentation is {m.shape[0]}x{m.shape[1]}, image {img['height']}x{img['width']}")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{where}: segmentation does not rasterize: {exc}")
        names = cat.get("keypoints")
        if names:
            kp = ann.get("keypoints") or []
            if len(kp) != 3 * len(names) or ann.get("num_keypoints") != sum(1 for v in kp[2::3] if v > 0):
                problems.append(f"{where}: {len(kp)} keypoint numbers / num_keypoints {ann.get('num_keypoints')} "
                                f"do not fit {len(names)} keypoints")
    return problems, len(gt.dataset.get("images", [])), len(gt.dataset.get("annotations", []))


def check_release(folder: Path, categories: list[str], yolo_task: str = "detect", kpt_count: int = 0) -> list[str]:
    """Problems of the release written in ``folder`` (see the module docstring); ``[]`` = valid."""
    folder = Path(folder)
    problems: list[str] = []
    try:
        data = yaml.safe_load((folder / "data.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        return [f"data.yaml: cannot be read: {exc}"]
    if not isinstance(data, dict) or data.get("nc") != len(categories) or \
            [data.get("names", {}).get(i) for i in range(len(categories))] != list(categories):
        problems.append(f"data.yaml: nc / names do not match the categories {list(categories)}")
    elif yolo_task == "pose" and data.get("kpt_shape") != [kpt_count, 3]:
        problems.append(f"data.yaml: kpt_shape {data.get('kpt_shape')} is not [{kpt_count}, 3]")
    seen: dict = {"images": {}, "annotations": {}}
    n_images = n_anns = 0
    for split in SPLITS:
        images = sorted(p for p in (folder / "images" / split).glob("*") if p.is_file())
        members: dict[str, dict] = {}
        if (folder / "shards" / split / shards.INDEX).is_file():  # release.shard_mb: the images are tar members
            try:
                rows = shards.read_index(folder / "shards" / split)
                members = {r["name"]: r for r in rows}
            except Exception as exc:  # noqa: BLE001 - a damaged Parquet file
                problems.append(f"shards/{split}/{shards.INDEX}: cannot be read: {exc}")
            else:
                counts = collections.Counter(r["name"] for r in rows)
                for name in sorted(n for n, k in counts.items() if k > 1):
                    problems.append(f"shards/{split}/{shards.INDEX}: member {name!r} is listed more than once")
            images += [Path(n) for n in sorted(members)]
        if not images and not (folder / "coco" / f"instances_{split}.json").exists():
            if split in data:
                problems.append(f"data.yaml: lists {split} but images/{split}/ is empty")
            continue
        if data.get(split) != f"images/{split}":
            problems.append(f"data.yaml: {split} should be images/{split}, is {data.get(split)!r}")
        got, ni, na = _check_coco(folder, split, categories, seen, members)
        problems += got
        n_images, n_anns = n_images + ni, n_anns + na
        txts = {p.stem: p for p in (folder / "labels" / split).glob("*.txt")}
        for img in images:
            if img.suffix.lower() not in IMAGE_EXTS:
                problems.append(f"images/{split}/{img.name}: not a JPEG or PNG file name")
            t = txts.pop(img.stem, None)
            if t is None:
                problems.append(f"labels/{split}/{img.stem}.txt: missing (every image needs one, empty for a negative)")
                continue
            for p in yolo.check_label_text(t.read_text(encoding="utf-8"), yolo_task, len(categories), kpt_count):
                problems.append(f"labels/{split}/{t.name}: {p}")
        problems += [f"labels/{split}/{name}.txt: no image of that name" for name in sorted(txts)]
    for rel, schema, want in (("labels.parquet", LABELS, n_anns), ("lineage.parquet", RELEASE_LINEAGE, n_anns),
                              ("images.parquet", RELEASE_IMAGES, n_images)):
        try:
            n = len(tables.read_table(folder / rel, schema)) if (folder / rel).is_file() else None
        except Exception as exc:  # noqa: BLE001 - a damaged Parquet file
            problems.append(f"{rel}: cannot be read: {exc}")
            continue
        if n is None:
            problems.append(f"{rel}: missing")
        elif n != want:
            problems.append(f"{rel}: {n} rows, the COCO files hold {want}")
    manifest = folder / "manifest.json"
    if manifest.is_file():
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"manifest.json"}
        for rel in sorted(set(files) | present):
            if rel not in files:
                problems.append(f"{rel}: not listed in manifest.json")
            elif rel not in present:
                problems.append(f"{rel}: listed in manifest.json but missing")
            elif hashlib.sha256((folder / rel).read_bytes()).hexdigest() != files[rel]:
                problems.append(f"{rel}: sha256 differs from manifest.json")
    return problems


def validate_release(folder: Path, categories: list[str], yolo_task: str = "detect", kpt_count: int = 0) -> None:
    """Raise :class:`ReleaseInvalid` unless :func:`check_release` finds nothing."""
    problems = check_release(folder, categories, yolo_task, kpt_count)
    if problems:
        raise ReleaseInvalid(Path(folder), problems)
