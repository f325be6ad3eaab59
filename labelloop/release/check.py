"""Validation on write: every file of a release is read back and checked before it is accepted.

- ``annotations/instances_<split>.json`` (``coco/instances_<split>.json`` in a release written
  before :mod:`labelloop.release.layout`): loads in pycocotools (``COCO(path)``); ids unique across all
  splits; every ``file_name`` is a bare file name found as ``images/<split>/<file_name>``, with
  the width and height the entry states; every annotation
  has a known image and category, a box inside its image, ``iscrowd`` 0 or 1 (1 only with RLE),
  a segmentation pycocotools can rasterize (``annToMask``) at the image's size, and for keypoint
  categories ``3 * K`` keypoint numbers with ``num_keypoints`` = points with v > 0.
- ``annotations/person_keypoints_<split>.json`` and ``annotations/segm-<split>.json`` (when
  written): load in pycocotools, hold only annotations of the instances file (same ids), every
  keypoint object complete, every segmentation object with a segmentation that rasterizes
  (what ``COCOeval(..., "keypoints" | "segm")`` needs).
- ``labels/<split>/*.txt``: one per image of the YOLO view and no other, each valid for the
  layout (:func:`labelloop.formats.yolo.writer.check_label_text`: field count, class index,
  coordinates in [0, 1]); a split listed as ``<split>.txt`` has a label file for each listed
  image and none for the images it leaves out.
- ``data.yaml``: names every split present (``images/<split>`` or ``<split>.txt``), ``nc``
  equal to the categories, ``kpt_shape`` for pose; every listed folder or list exists.
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
from labelloop.release import layout, shards
from labelloop.tables.schemas import LABELS, RELEASE_IMAGES, RELEASE_LINEAGE

SPLITS = layout.SPLITS
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


class ReleaseInvalid(ValueError):
    """A written release failed its checks; ``problems`` lists them (file and problem each)."""

    def __init__(self, folder: Path, problems: list[str]):
        self.problems = problems
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"release files in {folder} failed validation: {'; '.join(problems[:5])}{more}")


def _load(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _instances_rel(folder: Path, split: str) -> str | None:
    """The split's COCO instances file, new layout first (None when neither exists)."""
    found = layout.coco_instances(lambda rel: b"" if (folder / rel).is_file() else None, split)
    return found[0] if found else None


def _check_coco(folder: Path, split: str, categories: list[str], seen: dict,
                members: dict[str, dict] | None = None, rel: str | None = None) -> tuple[list[str], COCO | None]:
    """Problems of a split's instances file, and the file as pycocotools loaded it (None when it
    cannot be loaded; the caller reads the split's views and crowd-only images from it)."""

    rel = rel or layout.instances_file(split)
    legacy = rel == layout.legacy_instances_file(split)
    path = folder / rel
    try:
        gt = _load(path)
    except Exception as exc:  # noqa: BLE001 - pycocotools raises bare assertions and KeyErrors
        return [f"{rel}: pycocotools cannot load it: {type(exc).__name__}: {exc}"], None
    problems = []
    cats = {c["id"]: c for c in gt.dataset.get("categories", [])}
    if [cats[k]["name"] for k in sorted(cats)] != list(categories):
        problems.append(f"{rel}: categories {[c['name'] for c in cats.values()]} differ from {list(categories)}")
    for img in gt.dataset.get("images", []):
        if img["id"] in seen["images"]:
            problems.append(f"{rel}: image id {img['id']} is also used in {seen['images'][img['id']]}")
        seen["images"][img["id"]] = rel
        name = str(img["file_name"])
        if legacy and not name.startswith(f"images/{split}/"):
            problems.append(f"{rel}: image {img['id']} file {name!r} is not under images/{split}/")
        elif not legacy and ("/" in name or "\\" in name or name in ("", ".", "..")):
            problems.append(f"{rel}: image {img['id']} file_name {name!r} is not a file name "
                            f"(it is relative to images/{split}/)")
            continue
        image_rel = layout.image_file(split, name)
        path = folder / image_rel
        f: Path | io.BytesIO = path
        member = (members or {}).get(image_rel)
        if member is not None:  # a tar member of shards/<split>/ (release.shard_mb)
            try:
                f = io.BytesIO(shards.read_member(folder / "shards" / split, member))
            except (OSError, ValueError) as exc:
                problems.append(f"{rel}: image {img['id']} file {name!r}: {exc}")
                continue
        elif not path.resolve().is_relative_to(folder.resolve()) or not path.is_file():
            problems.append(f"{rel}: image {img['id']} file {image_rel!r} does not exist in the release")
            continue
        try:
            with Image.open(f) as im:
                size = im.size
        except OSError as exc:
            problems.append(f"{image_rel}: cannot be read: {exc}")
            continue
        if size != (img["width"], img["height"]):
            problems.append(f"{image_rel}: is {size[0]}x{size[1]}, {rel} says {img['width']}x{img['height']}")
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
    return problems, gt


def _check_view(folder: Path, rel: str, kind: str, instances: dict[int, int]) -> list[str]:
    """Problems of a keypoints (``kind="keypoints"``) or segmentation (``"segm"``) view:
    ``instances`` maps the instances file's annotation ids to their category ids."""
    try:
        gt = _load(folder / rel)
    except Exception as exc:  # noqa: BLE001 - pycocotools raises bare assertions and KeyErrors
        return [f"{rel}: pycocotools cannot load it: {type(exc).__name__}: {exc}"]
    problems = []
    cats = {c["id"]: c for c in gt.dataset.get("categories", [])}
    for ann in gt.dataset.get("annotations", []):
        where = f"{rel}: annotation {ann.get('id')}"
        if instances.get(ann.get("id")) != ann.get("category_id"):
            problems.append(f"{where}: not in the instances file with that category")
            continue
        if kind == "keypoints":
            names = (cats.get(ann["category_id"]) or {}).get("keypoints") or []
            kp = ann.get("keypoints") or []
            if not names or len(kp) != 3 * len(names):
                problems.append(f"{where}: {len(kp)} keypoint numbers for {len(names)} keypoints")
        elif not ann.get("segmentation"):
            problems.append(f"{where}: no segmentation (COCOeval segm cannot rasterize it)")
        else:
            try:
                gt.annToMask(ann)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{where}: segmentation does not rasterize: {exc}")
    return problems


def _boxes_unchecked(folder: Path) -> dict[str, set[str]]:
    """``split -> image file stems`` of the images.parquet rows that are out of the box
    annotations (:func:`labelloop.release.layout.boxes_unchecked`); {} when it cannot be read
    (its own check reports that)."""
    out: dict[str, set[str]] = {}
    try:
        rows = tables.read_rows(folder / "images.parquet", RELEASE_IMAGES)
    except Exception:  # noqa: BLE001 - missing or damaged: reported by the row-count check
        return out
    for r in rows:
        if layout.boxes_unchecked(r.get("resolution"), r.get("n_labels"), r.get("image_labels")):
            out.setdefault(str(r["split"]), set()).add(Path(str(r["file_name"])).stem)
    return out


def _check_yolo_list(folder: Path, split: str, images: list[Path]) -> tuple[list[str], set[str]]:
    """Problems of ``<split>.txt`` and the image stems it lists."""
    rel = layout.yolo_list_file(split)
    try:
        lines = [ln.strip() for ln in (folder / rel).read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        return [f"{rel}: cannot be read: {exc}"], set()
    known = {f"./images/{split}/{p.name}": p.stem for p in images}
    problems = [f"{rel}: lists {ln!r}, not an image of images/{split}/" for ln in lines if ln not in known]
    return problems, {known[ln] for ln in lines if ln in known}


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
    unchecked = _boxes_unchecked(folder)  # split -> image stems out of the box annotations
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
        rel = _instances_rel(folder, split)
        if not images and rel is None:
            if split in data:
                problems.append(f"data.yaml: lists {split} but images/{split}/ is empty")
            continue
        got, gt = _check_coco(folder, split, categories, seen, members, rel)
        problems += got
        crowd_only: set[str] = set()
        if gt is not None:
            n_images += len(gt.dataset.get("images", []))
            n_anns += len(gt.dataset.get("annotations", []))
            crowd_only = {Path(im["file_name"]).stem for im in gt.dataset.get("images", [])
                          if (own := gt.imgToAnns.get(im["id"])) and all(a.get("iscrowd") for a in own)}
            if rel == layout.instances_file(split):
                instances = {a["id"]: a["category_id"] for a in gt.dataset.get("annotations", [])}
                for view, kind in ((layout.keypoints_file(split), "keypoints"), (layout.segmentation_file(split), "segm")):
                    if (folder / view).is_file():
                        problems += _check_view(folder, view, kind, instances)
        # the YOLO view: every image but those whose only objects are crowd regions
        in_view = {p.stem for p in images} - crowd_only - unchecked.get(split, set())
        left_out = crowd_only or unchecked.get(split)
        entry = (layout.yolo_list_file(split) if left_out else f"images/{split}") if in_view else None
        if data.get(split) != entry:
            problems.append(f"data.yaml: {split} should be {entry or 'left out (no image of it is in the YOLO view)'}, "
                            f"is {data.get(split)!r}")
        elif entry == layout.yolo_list_file(split):
            got_list, listed = _check_yolo_list(folder, split, images)
            problems += got_list
            if listed != in_view:
                problems.append(f"{entry}: lists {len(listed)} images, the split has {len(in_view)} outside crowd-only images")
        txts = {p.stem: p for p in (folder / "labels" / split).glob("*.txt")}
        for img in images:
            if img.suffix.lower() not in IMAGE_EXTS:
                problems.append(f"images/{split}/{img.name}: not a JPEG or PNG file name")
            if img.stem not in in_view:
                if img.stem in txts:
                    problems.append(f"labels/{split}/{img.stem}.txt: the image holds only crowd regions (or was reviewed for tags only) and is "
                                    "left out of the YOLO view, it should have no label file")
                    txts.pop(img.stem)
                continue
            t = txts.pop(img.stem, None)
            if t is None:
                problems.append(f"labels/{split}/{img.stem}.txt: missing (every image needs one, empty for a negative)")
                continue
            for p in yolo.check_label_text(t.read_text(encoding="utf-8"), yolo_task, len(categories), kpt_count):
                problems.append(f"labels/{split}/{t.name}: {p}")
        problems += [f"labels/{split}/{name}.txt: no image of that name" for name in sorted(txts)]
    for rel, schema, want in (("labels.parquet", LABELS, n_anns), ("lineage.parquet", RELEASE_LINEAGE, n_anns),
                              ("images.parquet", RELEASE_IMAGES, n_images + sum(map(len, unchecked.values())))):
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
