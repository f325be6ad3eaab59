"""Reviewed regions of one annotation -> validated pixel geometry on *our* image.

Importers (Label Studio, CVAT, COCO, YOLO) hand over the regions of one annotation in one of three
forms, and get back one pixel region per object:

- Label Studio (percent of the displayed image, :func:`labelloop.formats.labelstudio.reader.parse_export`):
  ``{"kind": "rectangle" | "polygon" | "brush" | "keypoint" | "visibility", "region_id", "category",
  "value", "original_width", "original_height"}``;
- pixel regions (CVAT, COCO): ``{"kind": "px", "region_id", "category", "bbox" (xyxy or None),
  "polygons" (flat COCO polygons or None), "mask" (COCO RLE JSON or None), "cvat_mask" (a CVAT
  mask not decoded yet, :class:`labelloop.formats.records.CvatMask`, or None), "keypoints" (flat COCO
  x, y, v or None), "attributes" (dict), "occluded" (bool), "iscrowd" (bool, optional: a crowd
  region), "original_width", "original_height"}``;
- normalized regions (YOLO, :class:`labelloop.formats.records.NormRegion`): ``{"kind": "norm",
  "region_id", "category", "box" ([cx, cy, w, h] or None), "polygon" (flat x, y or None),
  "keypoints" (flat x, y, v or None)}``, x values in units of the image width and y values of
  its height; converted to a pixel region of our image first
  (:func:`labelloop.formats.yolo.reader.norm_to_px`: box edges clipped to the image).

Output rows: ``{"index", "region_id", "category", "bbox" [x0, y0, x1, y1] px (clipped to the
image), "mask" (RLE JSON or None), "keypoints" (flat x, y, v or None), "attributes" (dict),
"occluded" (bool), "iscrowd" (bool: a crowd region, COCO ``iscrowd: 1``; only pixel regions carry
one, Label Studio has no crowd concept)}``. A crowd region has no keypoints with v > 0 (COCO's crowd
annotations have ``num_keypoints`` 0). A polygon becomes a mask (pycocotools rasterization,
:func:`labelloop.geometry.masks.polygons_to_rle`) with the box of its vertices; a mask alone gets its tight
box; a brush region (Label Studio brush RLE, :func:`labelloop.formats.labelstudio.brush.brush_rle_to_mask`)
becomes its mask with the mask's bounding box; a rotated rectangle the enclosing axis-aligned box, its rotation (degrees, clockwise) and
rotated box (pixels, pivot as the tool defines it) kept in ``attributes``. Keypoints are grouped
into their instance (:func:`labelloop.geometry.keypoints.group_keypoints`).

A pixel region that gives both a box and a mask (or polygons) must agree with itself: the mask's
extent may reach at most :data:`MASK_BOX_TOLERANCE` px past the box, else the region is rejected
(the box is not recomputed from the mask: which of the two is wrong cannot be told).

Any problem raises :class:`RegionError` naming the region: the whole annotation is rejected,
nothing of it is stored.
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any, Mapping, Sequence, cast

from labelloop.formats.cvat.reader import cvat_mask_rle
from labelloop.formats.labelstudio.brush import brush_rle_to_mask
from labelloop.formats.labelstudio.tasks import NO_OBJECTS_CHOICE
from labelloop.formats.records import NormRegion, Region
from labelloop.formats.yolo.reader import norm_to_px
from labelloop.geometry.boxes import box_problem, clip, ls_rotation, ls_to_xyxy
from labelloop.geometry.keypoints import KeypointError, check_triples, group_keypoints, ls_visibility, triples
from labelloop.geometry.masks import polygons_to_rle, rle_area, rle_bbox_xyxy
from labelloop.tables.schemas import ImageRow

#: The most mask-box pixels (width x height of each CVAT ``<mask>`` crop, summed) decoded for one
#: review file. Decoding works in the crop, not the image (:func:`labelloop.formats.cvat.reader.cvat_mask_rle`:
#: ~6 ns and 2 bytes per crop pixel measured, one mask at a time), so a file's masks cost at most
#: ~13 s however they are declared. 2**31 px is ~180 masks as large as a 12 MP photo, or tens of
#: thousands of object-sized ones; an image whose mask would go over it is rejected with this bound
#: named (split the export).
MAX_MASK_PIXELS_PER_FILE = 2**31


class RegionError(ValueError):
    """A region that cannot be stored as it is (the message names it and says why)."""


class MaskBudget:
    """What is left of one review file's allowance for decoding masks, in mask-box pixels
    (:data:`MAX_MASK_PIXELS_PER_FILE`, read when the budget is made); one per file
    (:func:`labelloop.review.importer.import_review` makes it, :func:`to_pixels` spends it)."""

    def __init__(self, pixels: int | None = None):
        self.limit = MAX_MASK_PIXELS_PER_FILE if pixels is None else int(pixels)
        self.left = self.limit

    def spend(self, pixels: int, name: str) -> None:
        """Take ``pixels`` from the budget before a mask of that many crop pixels is decoded.

        Raises:
            RegionError: the file's budget would be exceeded (the message names the bound).
        """
        if pixels > self.left:
            raise RegionError(f"{name}: decoding this mask ({pixels} px) would exceed this file's budget of "
                              f"{self.limit} mask-box pixels (labelloop.review.regions.MAX_MASK_PIXELS_PER_FILE, "
                              f"{self.left} left): split the export into smaller files")
        self.left -= pixels


def _rle_size(mask: str) -> tuple[int, int]:
    """``(height, width)`` of COCO RLE JSON text, without decoding it (ValueError: not RLE JSON)."""
    obj = json.loads(mask) if isinstance(mask, (str, bytes)) else mask
    size = obj.get("size") if isinstance(obj, dict) else None
    if not isinstance(size, list) or len(size) != 2:
        raise ValueError("mask has no [height, width] size")
    return int(size[0]), int(size[1])


def _name(reg: Mapping[str, Any], i: int) -> str:
    return f"region {reg['region_id']}" if reg.get("region_id") is not None else f"region #{i}"


def _check_size(reg: Mapping[str, Any], name: str, image: ImageRow) -> None:
    assert image["width"] is not None and image["height"] is not None  # an ok row: its size is known
    w, h = int(image["width"]), int(image["height"])
    for key, ours in (("original_width", w), ("original_height", h)):
        theirs = reg.get(key)
        if theirs is None:
            continue
        try:
            differs = abs(float(theirs) - ours) > 1 or not math.isfinite(float(theirs))
        except (TypeError, ValueError):
            raise RegionError(f"{name}: {key} {str(theirs)[:40]!r} is not a number") from None
        if differs:
            dim = key.split("_")[1]
            raise RegionError(f"{name}: {key} {theirs} disagrees with the {dim} {ours} of image "
                              f"{image['source_path']} (size mismatch)")


def _box(bbox, name: str, w: int, h: int) -> list[float]:
    problem = box_problem(bbox, w, h)
    if problem:
        raise RegionError(f"{name}: invalid geometry: {problem}")
    return clip(bbox, w, h)


def _ls_object(reg: Mapping[str, Any], name: str, w: int, h: int) -> dict:
    value = reg["value"]
    attributes: dict = {}
    mask = None
    try:
        if reg.get("kind", "rectangle") == "rectangle":
            bbox = ls_to_xyxy(value, w, h)
            rotation = ls_rotation(value)
            if rotation:
                attributes = {"rotation": rotation, "rotation_pivot": "top-left", "rotated_box_xywh": [
                    float(value["x"]) * w / 100, float(value["y"]) * h / 100,
                    float(value["width"]) * w / 100, float(value["height"]) * h / 100]}
        elif reg.get("kind") == "brush":
            mask = brush_rle_to_mask(value.get("rle"), w, h)
            if rle_area(mask) <= 0:
                raise RegionError(f"{name}: empty brush mask")
            bbox = rle_bbox_xyxy(mask)
        else:  # polygon
            flat = [float(c) for x, y in value["points"] for c in (x * w / 100.0, y * h / 100.0)]
            bbox = [min(flat[0::2]), min(flat[1::2]), max(flat[0::2]), max(flat[1::2])]
            _box(bbox, name, w, h)
            mask = polygons_to_rle([flat], h, w)
    except (ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, RegionError):
            raise
        raise RegionError(f"{name}: {exc}") from None
    return {"bbox": _box(bbox, name, w, h), "mask": mask, "attributes": attributes, "occluded": False}


#: How many pixels a mask's extent may reach past its annotation's own box (exporters round).
MASK_BOX_TOLERANCE = 1.0


def _check_fits(extent: Sequence[float], bbox: Sequence[float], name: str) -> None:
    """Raise RegionError when a mask's (or polygon's) extent reaches more than
    :data:`MASK_BOX_TOLERANCE` px past the annotation's box (both xyxy pixels)."""
    t = MASK_BOX_TOLERANCE
    if (extent[0] < bbox[0] - t or extent[1] < bbox[1] - t or extent[2] > bbox[2] + t or extent[3] > bbox[3] + t):
        ext = ", ".join(f"{float(v):.1f}" for v in extent)
        box = ", ".join(f"{float(v):.1f}" for v in bbox)
        raise RegionError(f"{name}: the mask [{ext}] reaches outside its bbox [{box}] (xyxy px, more than "
                          f"{t:g} px): the geometry contradicts itself (an RLE with row-major counts, or a "
                          "polygon in other coordinates?)")


def _px_object(reg: Mapping[str, Any], name: str, w: int, h: int, budget: MaskBudget) -> dict:
    mask = reg.get("mask")
    try:
        if reg.get("polygons"):
            mask = polygons_to_rle(reg["polygons"], h, w)
            flat = [c for poly in reg["polygons"] for c in poly]
            extent = [min(flat[0::2]), min(flat[1::2]), max(flat[0::2]), max(flat[1::2])]
            _box(extent, name, w, h)
        cvat = reg.get("cvat_mask")
        if cvat is not None and mask is None:  # decoded now: the image is ours, its size checked
            declared = (reg.get("original_width"), reg.get("original_height"))
            if declared != (w, h):
                raise RegionError(f"{name}: mask drawn on a {declared[0]}x{declared[1]} image, image is {w}x{h} "
                                  "(size mismatch)")
            budget.spend(int(cvat["width"]) * int(cvat["height"]), name)
            mask = cvat_mask_rle(cvat, w, h)
        if mask is not None:
            area = rle_area(mask)  # validates the runs against the RLE's size, without decoding the mask
            mh, mw = _rle_size(mask)
            if (mh, mw) != (h, w):
                raise RegionError(f"{name}: mask is {mw}x{mh}, image is {w}x{h}")
            if area <= 0:
                raise RegionError(f"{name}: empty mask")
    except RegionError:
        raise
    except (ValueError, TypeError) as exc:
        raise RegionError(f"{name}: bad mask or polygon: {exc}") from None
    bbox = reg.get("bbox")
    if bbox is None:
        if mask is None:
            raise RegionError(f"{name}: no box, polygon or mask")
        bbox = extent if reg.get("polygons") else rle_bbox_xyxy(mask)
    elif mask is not None:
        _check_fits(extent if reg.get("polygons") else rle_bbox_xyxy(mask), bbox, name)
    return {"bbox": _box(bbox, name, w, h), "mask": mask, "attributes": dict(reg.get("attributes") or {}),
            "occluded": bool(reg.get("occluded"))}


def tag_answers(regions: Sequence[Region], categories: set[str], tag_categories: set[str] | None) -> list[str]:
    """The image-level labels (``level: tag`` categories) an annotation's tag regions give: regions of
    kind ``tag`` (Label Studio's ``tags`` Choices, CVAT ``<tag>``), each with
    ``value["choices"]`` = category names. Returns them sorted and deduplicated ([] without tag
    regions). A name in another Unicode form (NFC vs NFD) is that category. The reserved choice
    ``no objects`` (:data:`labelloop.formats.labelstudio.tasks.NO_OBJECTS_CHOICE`: the reviewer
    checked the image for boxes and found none) is returned as given, when the project has tag
    categories.

    Raises:
        RegionError: a choice naming no category of the project, or naming a ``box`` / ``mask``
            category (a Choices result on a box-only category), or any tag answer when
            ``tag_categories`` is None (a caller that reads no tags: gold sets): the whole
            annotation is rejected with that reason.
    """
    if tag_categories is None:  # a reader of boxes only (gold sets): a tag answer has no place there
        for i, reg in enumerate(cast(Sequence[Mapping[str, Any]], regions)):
            if reg.get("kind") == "tag":
                raise RegionError(f"{_name(reg, i)}: image-level tags {(reg.get('value') or {}).get('choices')} "
                                  "are not read here (gold sets hold boxes, masks and keypoints)")
    tags = tag_categories or set()
    by_nfc = {unicodedata.normalize("NFC", c): c for c in categories}
    out: set[str] = set()
    either: Sequence[Mapping[str, Any]] = regions
    for i, reg in enumerate(either):
        if reg.get("kind") != "tag":
            continue
        for choice in (reg.get("value") or {}).get("choices") or []:
            cat = by_nfc.get(unicodedata.normalize("NFC", str(choice)), str(choice))
            if cat == NO_OBJECTS_CHOICE and tags:
                out.add(cat)
                continue
            if cat not in categories:
                raise RegionError(f"{_name(reg, i)}: tag {choice!r} names no category "
                                  f"(known: {', '.join(sorted(categories))})")
            if cat not in tags:
                raise RegionError(f"{_name(reg, i)}: tag {cat!r} is a box category, not an image-level one "
                                  f"(level: tag categories: {', '.join(sorted(tags)) or 'none'})")
            out.add(cat)
    return sorted(out)


def to_pixels(regions: Sequence[Region], image: ImageRow, categories: set[str],
              keypoint_schema: dict[str, list[str]] | None = None, budget: MaskBudget | None = None,
              tag_categories: set[str] | None = None) -> list[dict]:
    """Validate an annotation's regions and convert them to pixel regions of ``image``.

    Tag regions (image-level labels) are checked by :func:`tag_answers` against
    ``tag_categories`` (the ``level: tag`` categories; None = none) and give no pixel region.

    Args:
        regions: the annotation's regions (any form of the module docstring).
        image: our IMAGES row (``width``, ``height`` after EXIF transpose, ``source_path``).
        categories: the project's category names.
        keypoint_schema: ``{category: [keypoint names]}`` for categories with keypoints.
        budget: the file's :class:`MaskBudget` (CVAT masks are decoded within it, only after their
            declared image size was found equal to ours); None: a budget of this call alone.

    Returns:
        Pixel regions in input order (keypoint and visibility regions are folded into their
        instance's ``keypoints``).

    Raises:
        RegionError: a duplicate region id, no or an unknown label (a label that differs from a
            category only by Unicode normalisation, NFC vs NFD, is that category), a size mismatch with our
            image (> 1 px), geometry outside the image or of zero area, a malformed mask or
            polygon, keypoints that cannot be attached (see :mod:`labelloop.geometry.keypoints`), or
            a mask over the file's budget of decoded mask pixels.
    """
    assert image["width"] is not None and image["height"] is not None  # an ok row: its size is known
    w, h = int(image["width"]), int(image["height"])
    budget = budget if budget is not None else MaskBudget()
    tag_answers(regions, categories, tag_categories)
    by_nfc = {unicodedata.normalize("NFC", c): c for c in categories}
    schema = keypoint_schema or {}
    kp_names = {n for names in schema.values() for n in names}
    out: list[dict] = []
    points: list[dict] = []
    visibility: dict[Any, Any] = {}
    seen = set()
    either: Sequence[Mapping[str, Any]] = regions  # either form of region, read by key
    for i, reg in enumerate(either):
        name = _name(reg, i)
        kind = reg.get("kind", "rectangle")
        if kind == "norm":  # YOLO: normalized by the image size, now known to be ours
            try:
                reg, kind = norm_to_px(cast(NormRegion, reg), w, h), "px"
            except (TypeError, ValueError) as exc:
                raise RegionError(f"{name}: bad normalized geometry: {exc}") from None
        if kind == "tag":  # an image-level label, checked above: no geometry
            continue
        rid = reg.get("region_id")
        if kind == "visibility":
            visibility[rid] = reg["value"].get("choices")
            if rid is None:
                visibility[(reg["value"].get("x"), reg["value"].get("y"))] = reg["value"].get("choices")
            continue
        if rid is not None:
            if rid in seen:
                raise RegionError(f"{name}: duplicate region id")
            seen.add(rid)
        cat = reg.get("category")
        if cat is None:
            raise RegionError(f"{name}: no label")
        _check_size(reg, name, image)
        if kind == "keypoint":
            if cat not in kp_names:
                raise RegionError(f"{name}: unknown keypoint {cat!r}" + (
                    f" (known: {', '.join(sorted(kp_names))})" if kp_names else " (no category has keypoints)"))
            try:
                x, y = float(reg["value"]["x"]) * w / 100.0, float(reg["value"]["y"]) * h / 100.0
            except (KeyError, TypeError, ValueError):
                raise RegionError(f"{name}: keypoint needs numeric x, y") from None
            if not (-1e-6 <= x <= w + 1e-6 and -1e-6 <= y <= h + 1e-6):
                raise RegionError(f"{name}: keypoint {cat} ({x:.2f}, {y:.2f}) outside the {w}x{h} image")
            points.append({"region_id": rid, "name": cat, "x": x, "y": y, "value": reg["value"]})
            continue
        if cat not in categories and isinstance(cat, str):  # the same name in another Unicode form
            cat = by_nfc.get(unicodedata.normalize("NFC", cat), cat)
        if cat not in categories:
            raise RegionError(f"{name}: unknown category {cat!r} (known: {', '.join(sorted(categories))})")
        if kind == "px":
            obj = _px_object(reg, name, w, h, budget)
        elif kind in ("rectangle", "polygon", "brush"):
            if not isinstance(reg.get("value"), dict):
                raise RegionError(f"{name}: missing value")
            obj = _ls_object(reg, name, w, h)
        else:
            raise RegionError(f"{name}: unsupported region kind {kind!r}")
        kps = reg.get("keypoints")
        crowd = kind == "px" and bool(reg.get("iscrowd"))
        if crowd and kps is not None and any(float(v) > 0 for v in list(kps)[2::3]):
            raise RegionError(f"{name}: a crowd region (iscrowd) cannot carry labeled keypoints")
        if crowd:
            kps = None
        if kps is not None:
            if cat not in schema:
                raise RegionError(f"{name}: keypoints on category {cat!r}, which has none in the config")
            try:
                kps = check_triples(kps, schema[cat], w, h)
            except KeypointError as exc:
                raise RegionError(f"{name}: {exc}") from None
        out.append({"index": i, "region_id": rid, "category": cat, "keypoints": kps, "iscrowd": crowd, **obj})
    if points:
        for p in points:
            choices = visibility.get(p["region_id"]) if p["region_id"] is not None else None
            if choices is None:
                choices = visibility.get((p["value"].get("x"), p["value"].get("y")))
            p["v"] = ls_visibility(choices)
        instances = [{"index": k, "region_id": r["region_id"], "bbox": r["bbox"], "names": schema[r["category"]]}
                     for k, r in enumerate(out) if r["category"] in schema and not r["iscrowd"]]
        try:
            grouped = group_keypoints(points, instances)
        except KeypointError as exc:
            raise RegionError(str(exc)) from None
        for k, pts in grouped.items():
            out[k]["keypoints"] = triples(pts, schema[out[k]["category"]])
    return out
