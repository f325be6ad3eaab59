"""COCO JSON annotations (boxes, polygon or RLE masks, keypoints) imported as reviewed labels.

Format: https://cocodataset.org/#format-data ("Object Detection", "Keypoint Detection"): a JSON
object with ``images`` (``id, file_name, width, height``), ``annotations`` (``id, image_id,
category_id, bbox [x, y, w, h]`` pixels, ``segmentation`` as polygons ``[[x1, y1, ...], ...]``
or RLE ``{"size": [h, w], "counts": str | [int]}``, ``keypoints [x, y, v, ...]``, ``iscrowd``)
and ``categories`` (``id, name``, ``keypoints`` names). Masks are decoded with pycocotools
(:func:`labelloop.geometry.masks.segmentation_to_rle`).

One record per COCO image (an image listed without annotations is a reviewed negative):

- identity: source ``coco/<file stem>`` unless given; task_id = the image's ``file_name``;
  tool_annotation_id ``coco-image``; updated_at = ``info.date_created`` (ISO 8601 or COCO's
  ``YYYY/MM/DD``), else the time the caller passes (the file's modification time), so the same
  file imported twice adds nothing and a later file supersedes;
- image matching: the entry's ``sha256`` (labelloop releases write it), else ``file_name`` as a
  path (our ``uri`` or ``source_path``, or a release file named ``<image_id[:16]>.ext``), else a
  bare ``file_name`` when exactly one image of the workspace has that name
  (:class:`labelloop.review.matching.ImageIndex`), never by position;
- image entries that share a ``file_name`` (label-studio-sdk's COCO converter writes one entry
  per Label Studio annotation) are one image: their annotations merge into one record, an object
  stated identically under two entries kept once (entries whose sizes disagree reject that image);
- an entry's ``width`` / ``height`` may be null (Label Studio's COCO export writes null for a
  reviewed image without objects): the size is then labelloop's record of the matched image, and
  polygons are rasterized at that size when the file is imported;
- annotator: ``coco-user-`` + 12 hex of sha256 of ``info.contributor`` (``coco-user-unknown``).

A whole-file problem (not a JSON object, missing or ill-typed top-level lists, duplicate image or
category ids) raises :class:`CocoFormatError`; a bad annotation rejects its image alone (an
annotation of an unknown image is rejected alone).

Crowd regions: an ``iscrowd: 1`` annotation (COCO's mark for a region covering many objects of
its class, segmentation usually an uncompressed RLE) imports as one region with ``iscrowd`` true,
kept through ``human_labels`` and ``labels`` to the release: COCO writes it back with
``iscrowd: 1`` and RLE, YOLO leaves it out (:mod:`labelloop.formats.yolo.writer`). ``iscrowd`` must be 0 or 1
(``true`` / ``false`` too, as JSON booleans or the strings ``"0"``, ``"1"``, ``"true"``,
``"false"``); a crowd region's keypoints must all be unlabeled (v = 0).

A mask that does not fit its annotation's ``bbox`` (its extent reaching more than a pixel past
the box: an RLE whose counts run row-major, a polygon in other coordinates) rejects the image,
naming the annotation (:mod:`labelloop.review.regions`): the box and the mask contradict each
other, and neither can be trusted over the other.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import reprlib
from typing import Any, TypeGuard

from labelloop.formats.records import ParsedFile, ReviewRecord, annotator_pseudonym, new_record
from labelloop.geometry.boxes import box_problem, xywh_to_xyxy
from labelloop.geometry.masks import segmentation_to_rle

TOOL = "coco"


class CocoFormatError(ValueError):
    """A file that is not COCO annotation JSON at all (message names file and problem)."""


def _iso(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    v = value.strip()
    for parse in (lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00")),
                  lambda s: dt.datetime.strptime(s, "%Y/%m/%d"), lambda s: dt.datetime.strptime(s, "%Y/%m/%d %H:%M:%S")):
        try:
            t = parse(v)
            t = t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
            return t.astimezone(dt.timezone.utc).isoformat()
        except (ValueError, OverflowError):  # OverflowError: year 9999 / 1 shifted past the range by its offset
            continue
    return None


def looks_like(content: Any) -> bool:
    """Whether ``content`` (parsed JSON) is COCO: an object with ``images`` and ``annotations``."""
    return isinstance(content, dict) and "images" in content and "annotations" in content


def parse(content: Any, *, where: str, fallback_time: str, keypoints: dict[str, list[str]] | None = None
          ) -> ParsedFile:
    """A COCO file's records (:func:`parse_coco_review`); COCO names no container.

    Raises:
        CocoFormatError: see :func:`parse_coco_review`.
    """
    records = parse_coco_review(content, where=where, fallback_time=fallback_time, keypoints=keypoints)
    return {"tool": TOOL, "format": "coco", "records": records, "container": None}


def _int_id(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


_CROWD = {0: False, 1: True, None: False, "0": False, "1": True, "false": False, "true": True}


def _crowd(value: Any, name: str) -> bool:
    """COCO ``iscrowd`` as a bool: 0 / 1, true / false, or those as strings (any case)."""
    key = value.strip().lower() if isinstance(value, str) else value
    try:
        return _CROWD[key]  # True / False hash as 1 / 0
    except (KeyError, TypeError):
        raise ValueError(f"{name}: iscrowd {value!r} (want 0 or 1)") from None


def _polygons(seg: list, name: str) -> list[list[float]]:
    """COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` checked: numbers, an even count, 3 points or more."""
    out = []
    for poly in seg:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in poly):
            raise ValueError(f"{name}: bad segmentation: a polygon must be 3 or more x, y pairs of numbers, "
                             f"got {str(poly)[:80]}")
        out.append([float(v) for v in poly])
    return out


def _region(ann: dict, image: dict, cats: dict, cat_kps: dict, keypoints: dict[str, list[str]]) -> dict:
    aid = ann.get("id")
    name = f"annotation {aid}"
    if not _int_id(ann.get("category_id")) or ann["category_id"] not in cats:
        raise ValueError(f"{name}: unknown category id {ann.get('category_id')!r}")
    cat = cats[ann["category_id"]]
    crowd = _crowd(ann.get("iscrowd", 0), name)
    box = ann.get("bbox")
    if not isinstance(box, list) or len(box) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box):
        raise ValueError(f"{name}: bad bbox {box!r} (want [x, y, w, h] numbers)")
    x, y, w, h = map(float, box)
    region = {"kind": "px", "region_id": str(aid), "category": cat, "bbox": [x, y, x + w, y + h], "polygons": None,
              "mask": None, "keypoints": None, "attributes": {}, "occluded": False, "iscrowd": bool(crowd),
              "original_width": image["width"], "original_height": image["height"]}
    if w <= 0 or h <= 0:
        raise ValueError(f"{name}: bbox {box!r} has zero or negative size")
    seg = ann.get("segmentation")
    if seg and isinstance(seg, list) and image["width"] is None:
        region["polygons"] = _polygons(seg, name)  # rasterized at the matched image's size
    elif seg:
        h, w = image["height"], image["width"]
        if w is None and isinstance(seg, dict) and isinstance(seg.get("size"), list) and len(seg["size"]) == 2:
            h, w = seg["size"]  # an RLE carries its size; it must be the matched image's (checked on import)
        try:
            region["mask"] = segmentation_to_rle(seg, h, w)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name}: bad segmentation: {exc}") from None
    kp = ann.get("keypoints")
    if kp:
        ours = keypoints.get(cat)
        if not ours:
            raise ValueError(f"{name}: keypoints on category {cat!r}, which has none in the config")
        theirs = cat_kps.get(ann["category_id"]) or ours
        if not isinstance(kp, list) or len(kp) != 3 * len(theirs or []):
            raise ValueError(f"{name}: keypoints need {3 * len(theirs or [])} numbers, got {len(kp) if isinstance(kp, list) else kp!r}")
        unknown = [n for n in theirs if n not in ours]
        if unknown:
            raise ValueError(f"{name}: keypoints {unknown} are not in the config's {cat} keypoints")
        pos = {n: i for i, n in enumerate(theirs)}
        flat: list[float] = []
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in kp):
            raise ValueError(f"{name}: keypoints must be numbers, got {str(kp)[:80]}")
        for n in ours:
            flat += [float(v) for v in kp[3 * pos[n]:3 * pos[n] + 3]] if n in pos else [0.0, 0.0, 0.0]
        region["keypoints"] = flat
    score = ann.get("score")
    if score is not None:
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
            raise ValueError(f"{name}: score {reprlib.repr(score)} is not a finite number")
        region["attributes"]["score"] = float(score)
    return region


def parse_coco_review(obj: Any, *, where: str, fallback_time: str,
                      keypoints: dict[str, list[str]] | None = None) -> list[ReviewRecord]:
    """COCO annotation JSON (parsed) -> review records (see the module docstring).

    Args:
        obj: the parsed JSON.
        where: file name for messages.
        fallback_time: ISO 8601 version time when ``info.date_created`` is absent or unreadable.
        keypoints: ``{category: [keypoint names]}`` of the project; COCO keypoints are reordered by
            name into that order (missing names get v = 0).

    Returns:
        Records shaped as :func:`labelloop.formats.labelstudio.reader.parse_export`'s, with ``tool = "coco"``,
        ``allow_name = True`` (a unique bare file name matches), ``data_image_id`` = the entry's ``sha256`` and pixel ``regions``.

    Raises:
        CocoFormatError: not an object with ``images`` / ``annotations`` / ``categories`` lists,
            a category without integer ``id`` and ``name`` or with ``keypoints`` that are not a
            list of names, or duplicate image / category ids.
    """
    if not isinstance(obj, dict):
        raise CocoFormatError(f"{where}: expected a COCO JSON object, got a {type(obj).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(obj.get(key), list):
            raise CocoFormatError(f"{where}: '{key}' must be a list: not a COCO annotation file")
    cats, cat_kps = {}, {}
    for c in obj["categories"]:
        if not isinstance(c, dict) or not _int_id(c.get("id")) or not isinstance(c.get("name"), str):
            raise CocoFormatError(f"{where}: category {c!r} needs an integer 'id' and a 'name'")
        if c["id"] in cats:
            raise CocoFormatError(f"{where}: category id {c['id']} is used twice")
        kp_names = c.get("keypoints")
        if kp_names is not None and (not isinstance(kp_names, list) or not all(isinstance(k, str) for k in kp_names)):
            raise CocoFormatError(f"{where}: category {c['id']} 'keypoints' must be a list of names, "
                                  f"got {str(kp_names)[:80]}")
        cats[c["id"]], cat_kps[c["id"]] = c["name"], c.get("keypoints")
    raw_info = obj.get("info")
    info = raw_info if isinstance(raw_info, dict) else {}
    updated = _iso(info.get("date_created")) or fallback_time
    annotator = annotator_pseudonym(TOOL, str(info.get("contributor") or "").strip() or None)
    images: dict[Any, dict] = {}
    by_name: dict[str, dict] = {}
    records: list[ReviewRecord] = []
    for i, im in enumerate(obj["images"]):
        iid = im.get("id") if isinstance(im, dict) else None
        if iid is not None and not isinstance(iid, (int, str)):
            raise CocoFormatError(f"{where}: image id {iid!r} must be an integer or a string")
        if iid is not None and iid in images:
            raise CocoFormatError(f"{where}: image id {iid!r} is used twice")
        fname = im.get("file_name") if isinstance(im, dict) else None
        w, h = (im.get("width"), im.get("height")) if isinstance(im, dict) else (None, None)
        same = by_name.get(fname) if isinstance(fname, str) and fname else None
        if same is not None and iid is not None:  # another entry of an image already listed
            if (w, h) != (None, None) and (same["width"], same["height"]) != (None, None) \
                    and (w, h) != (same["width"], same["height"]):
                same["rec"]["error"] = same["rec"]["error"] or (
                    f"image entries {same['ids'][0]!r} and {iid!r} share the file_name with sizes "
                    f"{same['width']}x{same['height']} and {w}x{h}")
            elif same["width"] is None and _int_id(w) and _int_id(h) and w > 0 and h > 0:
                same["width"], same["height"] = w, h
            same["ids"].append(iid)
            images[iid] = same
            continue
        task = str(fname or f"image {iid if iid is not None else i}")
        rec = new_record(TOOL, task, "coco", allow_name=True, tool_annotation_id="coco-image", updated_at=updated,
                         annotator=annotator, image_ref=fname if isinstance(fname, str) and fname else None,
                         data_image_id=im.get("sha256") if isinstance(im, dict) and isinstance(im.get("sha256"), str)
                         else None, item=f"image {task}")
        if iid is None:
            rec["error"] = f"image entry #{i} has no 'id'"
        elif not rec["image_ref"]:
            rec["error"] = "image entry has no 'file_name'"
        elif (w, h) != (None, None) and not all(_int_id(v) and v > 0 for v in (w, h)):
            rec["error"] = f"image has bad size {w!r}x{h!r}"
        records.append(rec)
        if iid is not None:
            images[iid] = {"rec": rec, "width": w, "height": h, "ids": [iid]}
            if rec["image_ref"]:
                by_name[rec["image_ref"]] = images[iid]
    for ann in obj["annotations"]:
        if not isinstance(ann, dict):
            records.append(new_record(TOOL, "?", "coco", allow_name=False, tool_annotation_id="annotation",
                                      item="image ?", error=f"annotation {ann!r} is not an object"))
            continue
        target = images.get(ann.get("image_id")) if isinstance(ann.get("image_id"), (int, str)) else None
        if target is None:
            records.append(new_record(TOOL, f"annotation {ann.get('id')}", "coco", allow_name=False,
                                      item=f"annotation {ann.get('id')}", error=f"annotation {ann.get('id')} refers "
                                      f"to unknown image id {ann.get('image_id')!r}"))
            continue
        rec = target["rec"]
        if rec["error"]:
            continue
        try:
            region = _region(ann, target, cats, cat_kps, keypoints or {})
        except ValueError as exc:
            rec["error"] = str(exc)
            continue
        if len(target["ids"]) > 1 and any(_same_object(region, r) for r in rec["regions"]):
            continue  # the same object written under two entries of one image
        rec["regions"].append(region)
    return records


def _same_object(a: dict, b: Any) -> bool:
    """Two regions that state the same object: category, box (to 0.01 px), mask, polygons, keypoints."""
    return (a["category"] == b.get("category") and a.get("iscrowd") == b.get("iscrowd")
            and [round(v, 2) for v in a["bbox"]] == [round(v, 2) for v in b.get("bbox") or []]
            and a.get("mask") == b.get("mask") and a.get("polygons") == b.get("polygons")
            and a.get("keypoints") == b.get("keypoints"))


_READ_BOX_TOL = 0.01  # px; other exporters round coordinates


def _require(d: Any, keys: tuple[str, ...], what: str, where: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: {what} is not an object")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"{where}: {what} lacks {missing}")


def read_coco_annotations(path: str | os.PathLike) -> tuple[list[dict], list[dict], list[str]]:
    """Read a labelloop release's COCO file back into labelloop shapes (the writer's round trip:
    :func:`labelloop.formats.coco.writer.build_coco` of what this returns gives the same bytes).
    Review files, COCO ones included, go through :func:`parse` instead.

    Returns:
        ``(images, labels, categories)``:

        - images: ``image_id`` (the entry's ``sha256`` when present, else its ``file_name``),
          ``file_name``, ``width``, ``height`` and every other key of the entry except ``id``
          and ``sha256``; in file order.
        - labels: ``label_id`` (the annotation's ``label_id``, else its COCO id as a string),
          ``image_id``, ``category`` (name), ``bbox`` xyxy pixels, ``mask`` (RLE JSON of the
          ``segmentation``, or None when it is missing or empty), ``score`` and ``origin``
          (None when absent), ``iscrowd`` (0/1) and ``keypoints`` (flat x, y, v list, or None);
          in file order.
        - categories: names in ascending category id order.

    Raises:
        ValueError: naming ``path`` and the problem: unreadable or not JSON, missing
            top-level lists or keys, duplicate ids, unknown category or image id, a bbox that
            is not 4 finite numbers with positive size inside the image (0.01 px tolerance),
            or a malformed segmentation.
    """
    where = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: cannot read COCO JSON: {exc}") from None
    _require(data, ("images", "annotations", "categories"), "the top level", where)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data[key], list):
            raise ValueError(f"{where}: '{key}' must be a list")

    cats: dict[Any, str] = {}
    for c in data["categories"]:
        _require(c, ("id", "name"), "a category", where)
        if not isinstance(c["id"], int) or isinstance(c["id"], bool):
            raise ValueError(f"{where}: category id {c['id']!r} is not an integer")
        if c["id"] in cats:
            raise ValueError(f"{where}: category id {c['id']!r} is used twice")
        cats[c["id"]] = str(c["name"])

    images, by_id = [], {}
    for im in data["images"]:
        what = f"image {im.get('id')!r}" if isinstance(im, dict) else "an image"
        _require(im, ("id", "file_name", "width", "height"), what, where)
        if not isinstance(im["id"], (int, str)):
            raise ValueError(f"{where}: {what} id must be an integer or a string")
        if im["id"] in by_id:
            raise ValueError(f"{where}: image id {im['id']!r} is used twice")
        w, h = im["width"], im["height"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h)):
            raise ValueError(f"{where}: image {im['id']!r} has bad size {w!r}x{h!r}")
        entry = {"image_id": im.get("sha256") or im["file_name"], "file_name": im["file_name"], "width": w, "height": h}
        entry.update({k: v for k, v in im.items() if k not in ("id", "sha256", "file_name", "width", "height")})
        by_id[im["id"]] = entry
        images.append(entry)

    labels = []
    for ann in data["annotations"]:
        what = f"annotation {ann.get('id')!r}" if isinstance(ann, dict) else "an annotation"
        _require(ann, ("id", "image_id", "category_id", "bbox"), what, where)
        if not isinstance(ann["category_id"], int) or ann["category_id"] not in cats:
            raise ValueError(f"{where}: {what} has unknown category id {ann['category_id']!r}")
        img = by_id.get(ann["image_id"]) if isinstance(ann["image_id"], (int, str)) else None
        if img is None:
            raise ValueError(f"{where}: {what} has unknown image id {ann['image_id']!r}")
        box = ann["bbox"]
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
        ):
            raise ValueError(f"{where}: {what} has bad bbox {box!r} (want [x, y, w, h] numbers)")
        bbox = xywh_to_xyxy(box)
        problem = box_problem(bbox, img["width"], img["height"], tol=_READ_BOX_TOL)
        if problem:
            raise ValueError(f"{where}: {what} has bad bbox {box!r} (xywh): {problem}")
        seg = ann.get("segmentation")
        mask = None
        if seg:
            try:
                mask = segmentation_to_rle(seg, img["height"], img["width"])
            except ValueError as exc:
                raise ValueError(f"{where}: {what} has a bad segmentation: {exc}") from None
        labels.append(
            {
                "label_id": str(ann["label_id"]) if ann.get("label_id") is not None else str(ann["id"]),
                "image_id": img["image_id"],
                "category": cats[ann["category_id"]],
                "bbox": bbox,
                "mask": mask,
                "score": ann.get("score"),
                "origin": ann.get("origin"),
                "iscrowd": int(ann.get("iscrowd") or 0),
                "keypoints": [float(v) for v in ann["keypoints"]] if ann.get("keypoints") else None,
            }
        )
    return images, labels, [cats[k] for k in sorted(cats)]
