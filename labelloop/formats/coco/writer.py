"""COCO object-detection JSON: build a release file from labels.

Format: https://cocodataset.org/#format-data ("Object Detection" and "Keypoint Detection").
Boxes are ``[x, y, w, h]`` pixels (top-left anchored) in the file and ``[x0, y0, x1, y1]`` pixels
everywhere else in labelloop. Segmentation, as COCO's own files write it:

- one object (``iscrowd: 0``): polygons, one per connected part, when the mask has no holes;
  compressed RLE when it has holes (polygons cannot carry a hole) - see
  :func:`labelloop.geometry.masks.coco_segmentation`; ``[]`` for a box without a mask;
- a crowd region (``iscrowd: 1``, a label whose ``iscrowd`` is true): uncompressed RLE
  (``counts`` a list of run lengths), the box rasterized when the label has no mask.

Keypoints (categories given ``keypoints`` names): ``keypoints`` is ``[x1, y1, v1, ...]`` with
3 numbers per named point, v = 0 not labeled (x = y = 0), 1 labeled but not visible, 2 visible;
``num_keypoints`` counts the points with v > 0; the category carries ``keypoints`` and
``skeleton`` (1-based index pairs). Output is deterministic: no dates, ids from sorted keys or
the stable id registry (:mod:`labelloop.release.ids`), keys sorted on serialization.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np

from labelloop.geometry.boxes import box_problem, xyxy_to_xywh
from labelloop.geometry.masks import coco_segmentation, decode_rle, rle_area
from labelloop.tables.schemas import LabelRow

_IMAGE_KEYS = ("image_id", "file_name", "width", "height")
INFO = {
    "description": "labelloop dataset release (COCO object detection)",
    "contributor": "labelloop",
    "url": "",
    "version": "1.0",
}


def uncompressed_rle(mask) -> dict:
    """COCO's uncompressed RLE of an ``(H, W)`` mask: ``{"size": [H, W], "counts": [runs]}``,
    runs over the column-major (Fortran) flattening, starting with a (possibly empty) run of 0s
    (the form of COCO's ``iscrowd: 1`` annotations; ``pycocotools.mask.frPyObjects`` reads it)."""

    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F") != 0
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0] + runs
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(v) for v in runs]}


def _keypoints(lab: LabelRow, names: list[str] | None, width: int, height: int, where: str
               ) -> tuple[list[float], int] | None:
    """COCO ``(keypoints, num_keypoints)`` of a label, or None when its category has no keypoints."""
    kp = lab.get("keypoints")
    if not names:
        if kp:
            raise ValueError(f"{where} has keypoints but its category {lab.get('category')!r} defines none")
        return None
    if not kp:
        return [0.0] * (3 * len(names)), 0
    if len(kp) != 3 * len(names):
        raise ValueError(f"{where} has {len(kp)} keypoint numbers; category {lab.get('category')!r} "
                         f"needs {3 * len(names)} (x, y, v for {len(names)} points)")
    out, n = [], 0
    for i in range(len(names)):
        x, y, v = (float(t) for t in kp[3 * i: 3 * i + 3])
        if v not in (0.0, 1.0, 2.0) or not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"{where}: keypoint {names[i]!r} has visibility {v} (want 0, 1, 2) or a non-finite x, y")
        if v == 0:
            out += [0.0, 0.0, 0.0]
            continue
        if not (0 <= x <= width and 0 <= y <= height):
            raise ValueError(f"{where}: keypoint {names[i]!r} ({x:.1f}, {y:.1f}) outside the {width}x{height} image")
        out += [x, y, v]
        n += 1
    return out, n


def build_coco(images: list[dict], labels: Sequence[LabelRow], categories: list[str], *,
               image_ids: dict[str, int] | None = None, annotation_ids: dict[str, int] | None = None,
               keypoints: dict[str, dict] | None = None) -> dict:
    """Assemble a COCO object-detection (and keypoint) dataset dict.

    Args:
        images: dicts with ``image_id`` (sha256 hex), ``file_name`` (path relative to the
            release root as written in it, e.g. ``"images/train/ab12.jpg"``), ``width`` and
            ``height`` (pixels, EXIF-corrected); any other key (e.g. ``source_path``) is copied
            onto the COCO image entry.
        labels: LABELS-shaped dicts (:data:`labelloop.tables.schemas.LABELS`): ``label_id``,
            ``image_id``, ``category``, ``bbox`` xyxy pixels, ``mask`` (RLE JSON or None),
            ``score``, ``origin``; other keys are ignored.
            ``keypoints`` (flat x, y, v triples in pixels, or None) and ``iscrowd`` (truthy: a
            crowd region) are used when present.
        categories: category names; COCO ids are 1.. in this order, supercategory ``"object"``.
        image_ids: ``image_id -> COCO image id`` (stable ids, :class:`labelloop.release.ids.CocoIds`);
            default 1.. in ascending image_id order.
        annotation_ids: ``label_id -> COCO annotation id``; default 1.. in (image, label_id) order.
        keypoints: ``category -> {"keypoints": [names], "skeleton": [[i, j], ...]}`` for the pose
            categories.

    Returns:
        ``{"info", "licenses": [], "categories", "images", "annotations"}``. Images are in
        COCO id order, each entry carries ``"sha256": image_id``; annotations go image by image in
        ``label_id`` order with ``bbox`` xywh, ``area`` (mask area when there is a mask, else box
        ``w * h``), ``iscrowd`` 0 or 1, ``segmentation`` (see the module docstring), ``label_id``,
        ``origin``, for model labels with a score ``score``, and for pose categories
        ``keypoints`` and ``num_keypoints``.

    Raises:
        ValueError: duplicate category or image, a label whose category is not in
            ``categories`` or whose image is not in ``images``, a box that is not valid inside
            its image (:func:`labelloop.geometry.boxes.box_problem`), a mask that is malformed or
            of another size than its image, keypoints of the wrong length, visibility or
            position, or a missing or repeated stable id.
    """
    if len(set(categories)) != len(categories):
        raise ValueError(f"duplicate category names in {categories!r}")
    cat_ids = {name: i for i, name in enumerate(categories, start=1)}
    kp_names = {c: list((keypoints or {}).get(c, {}).get("keypoints") or []) for c in categories}
    if image_ids is None:
        image_ids = {iid: n for n, iid in enumerate(sorted({d["image_id"] for d in images}), start=1)}
    out_images, img_index = [], {}
    for img in sorted(images, key=lambda d: (image_ids.get(d["image_id"], 0), d["image_id"])):
        missing = [k for k in _IMAGE_KEYS if k not in img]
        if missing:
            raise ValueError(f"image {img.get('image_id')!r} lacks {missing}")
        if img["image_id"] in img_index:
            raise ValueError(f"image {img['image_id']!r} is listed twice")
        if img["image_id"] not in image_ids:
            raise ValueError(f"image {img['image_id']!r} has no COCO id")
        entry = {k: v for k, v in img.items() if k not in _IMAGE_KEYS}
        entry.update(
            id=int(image_ids[img["image_id"]]),
            file_name=img["file_name"],
            width=int(img["width"]),
            height=int(img["height"]),
            sha256=img["image_id"],
        )
        img_index[img["image_id"]] = entry
        out_images.append(entry)

    by_image: dict[str, list[LabelRow]] = {}
    for lab in labels:
        where = f"label {lab.get('label_id')!r}"
        if lab.get("category") not in cat_ids:
            raise ValueError(f"{where} has category {lab.get('category')!r}, not one of {categories!r}")
        if lab.get("image_id") not in img_index:
            raise ValueError(f"{where} refers to image {lab.get('image_id')!r}, which is not in the images")
        by_image.setdefault(lab["image_id"], []).append(lab)

    if len({e["id"] for e in out_images}) != len(out_images):
        raise ValueError("two images were given the same COCO id")
    annotations: list[dict[str, Any]] = []
    seen_ids = set()
    for img in out_images:
        for lab in sorted(by_image.get(img["sha256"], []), key=lambda d: str(d.get("label_id"))):
            where = f"label {lab.get('label_id')!r}"
            problem = box_problem(lab.get("bbox"), img["width"], img["height"])
            if problem:
                raise ValueError(f"{where}: {problem}")
            x, y, w, h = xyxy_to_xywh(lab["bbox"])
            label_id = lab.get("label_id")
            ann_id = len(annotations) + 1 if annotation_ids is None else (
                annotation_ids.get(label_id) if label_id is not None else None)
            if ann_id is None or ann_id in seen_ids:
                raise ValueError(f"{where} has {'no' if ann_id is None else 'a repeated'} COCO annotation id")
            seen_ids.add(ann_id)
            ann: dict[str, Any] = {
                "id": int(ann_id),
                "image_id": img["id"],
                "category_id": cat_ids[lab["category"]],
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
                "segmentation": [],
                "label_id": lab.get("label_id"),
                "origin": lab.get("origin"),
            }
            rle = lab.get("mask")
            if rle:
                try:
                    mask = decode_rle(rle)
                except ValueError as exc:
                    raise ValueError(f"{where}: bad mask: {exc}") from None
                if mask.shape != (img["height"], img["width"]):
                    raise ValueError(
                        f"{where}: mask is {mask.shape[0]}x{mask.shape[1]} (h x w), "
                        f"image is {img['height']}x{img['width']}"
                    )
                ann["area"] = rle_area(rle)
                ann["segmentation"] = coco_segmentation(rle)
            if lab.get("iscrowd"):
                mask = decode_rle(rle) if rle else _box_mask(lab["bbox"], img["width"], img["height"])
                ann.update(iscrowd=1, segmentation=uncompressed_rle(mask), area=float(mask.sum()))
            kp = _keypoints(lab, kp_names[lab["category"]], img["width"], img["height"], where)
            if kp is not None:
                ann["keypoints"], ann["num_keypoints"] = kp
            score = lab.get("score")
            if lab.get("origin") == "model" and score is not None:
                ann["score"] = float(score)
            annotations.append(ann)

    return {
        "info": dict(INFO),
        "licenses": [],
        "categories": [_category(n, i, (keypoints or {}).get(n)) for n, i in cat_ids.items()],
        "images": out_images,
        "annotations": annotations,
    }


def instances_view(coco: dict) -> dict:
    """The ``instances_<split>.json`` view of a :func:`build_coco` dict: every image and object,
    without keypoint fields (``keypoints`` / ``num_keypoints`` on objects, ``keypoints`` /
    ``skeleton`` on categories), as COCO's own ``instances_*.json`` files hold them; the
    keypoints go to :func:`keypoints_view`. Returns a new dict; ``coco`` is not changed."""
    drop_ann, drop_cat = ("keypoints", "num_keypoints"), ("keypoints", "skeleton")
    return {**coco,
            "categories": [{k: v for k, v in c.items() if k not in drop_cat} for c in coco["categories"]],
            "annotations": [{k: v for k, v in a.items() if k not in drop_ann} for a in coco["annotations"]]}


def keypoints_view(coco: dict) -> dict | None:
    """The ``person_keypoints_<split>.json`` view of a :func:`build_coco` dict: the categories
    that define ``keypoints`` (their ids kept) and every object of them, each with ``keypoints``
    (``3 * K`` numbers) and ``num_keypoints``, every image. This is the file pycocotools'
    ``COCOeval(..., "keypoints")`` and datumaro's ``coco_person_keypoints`` read; objects of other
    categories are left out (COCO's ``person_keypoints`` files hold only ``person``). None when
    no category has keypoints."""
    cats = [c for c in coco["categories"] if c.get("keypoints")]
    if not cats:
        return None
    ids = {c["id"] for c in cats}
    return {**coco, "categories": cats, "annotations": [a for a in coco["annotations"] if a["category_id"] in ids]}


def segmentation_view(coco: dict, mask_categories: Sequence[str]) -> dict | None:
    """The segmentation view of a :func:`build_coco` dict, the file for ``COCOeval(..., "segm")``.

    pycocotools rasterizes every ground-truth object of the evaluated categories, and an object
    written with ``"segmentation": []`` (a box without a mask, as COCO tools write boxes) makes
    it raise ``IndexError``. The rule, keyed on each category's annotation level:

    - objects of ``mask_categories`` (the classes labeled with masks) keep their segmentation;
      one of them without a mask (a reviewer drew only its box) becomes an ignore region:
      ``iscrowd: 1`` with its box rasterized as uncompressed RLE, so a predicted mask there
      counts neither as a true nor as a false positive;
    - objects of the other (box-level) categories are left out. Their categories keep their ids
      (detections made for the instances file evaluate against this one unchanged) and have no
      ground truth, so pycocotools leaves them out of the mean (their AP is -1).

    Keypoint fields are dropped as in :func:`instances_view`. None when ``mask_categories`` is
    empty. Returns a new dict.
    """
    if not mask_categories:
        return None
    base = instances_view(coco)
    wanted = set(mask_categories)
    ids = {c["id"] for c in base["categories"] if c["name"] in wanted}
    sizes = {im["id"]: (int(im["width"]), int(im["height"])) for im in base["images"]}
    anns = []
    for a in base["annotations"]:
        if a["category_id"] not in ids:
            continue
        if not a.get("segmentation"):
            w, h = sizes[a["image_id"]]
            x, y, bw, bh = a["bbox"]
            mask = _box_mask([x, y, x + bw, y + bh], w, h)
            a = {**a, "iscrowd": 1, "segmentation": uncompressed_rle(mask), "area": float(mask.sum())}
        anns.append(a)
    return {**base, "annotations": anns}


def _category(name: str, cid: int, kp: dict | None) -> dict:
    out = {"id": cid, "name": name, "supercategory": "object"}
    if kp and kp.get("keypoints"):
        out["keypoints"] = list(kp["keypoints"])
        out["skeleton"] = [list(p) for p in kp.get("skeleton") or []]
    return out


def _box_mask(bbox, width: int, height: int):
    """The pixels whose centres lie inside the xyxy box (pycocotools' rasterization rule)."""

    x0, y0, x1, y1 = bbox
    cols = (np.arange(width) + 0.5 >= x0) & (np.arange(width) + 0.5 <= x1)
    rows = (np.arange(height) + 0.5 >= y0) & (np.arange(height) + 0.5 <= y1)
    return (rows[:, None] & cols[None, :]).astype(np.uint8)


def dumps_coco(obj: dict) -> bytes:
    """Serialize a COCO dict deterministically: UTF-8 JSON, sorted keys, compact separators,
    non-ASCII kept, trailing newline. Same input -> same bytes.

    Raises:
        ValueError: a NaN or infinite number (not valid JSON).
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


